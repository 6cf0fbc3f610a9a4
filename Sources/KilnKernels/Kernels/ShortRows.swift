/// Copies, adds and fills of short rows (a few to a few hundred floats: im2col rows, one output map of a
/// small image). Explicit 8-wide steps: at these lengths the compiler's auto-vectorised loops spend most of
/// their time in alias checks and scalar remainders, and `memcpy` calls cost more than the copy.
enum ShortRows {
    /// `dst[0..<n] = src[0..<n]` (the ranges must not overlap).
    @inline(__always)
    static func copy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
        var i = 0
        while i + 8 <= n {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self), toByteOffset: i * 4,
                         as: SIMD8<Float>.self)
            i += 8
        }
        if i + 4 <= n {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self), toByteOffset: i * 4,
                         as: SIMD4<Float>.self)
            i += 4
        }
        while i < n { dst[i] = src[i]; i += 1 }
    }

    /// `dst[0..<n] += src[0..<n]` (the ranges must not overlap).
    @inline(__always)
    static func add(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
        var i = 0
        while i + 8 <= n {
            let v = d.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                + s.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            d.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] += src[i]; i += 1 }
    }

    /// `dst[0..<n] = src[0..<n] + b` (the ranges must not overlap).
    @inline(__always)
    static func copy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, plus b: Float, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
        let bv = SIMD8<Float>(repeating: b)
        var i = 0
        while i + 8 <= n {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) + bv, toByteOffset: i * 4,
                         as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] = src[i] + b; i += 1 }
    }

    /// `dst[0..<n] += src[0..<n] + b` (the ranges must not overlap).
    @inline(__always)
    static func add(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, plus b: Float, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
        let bv = SIMD8<Float>(repeating: b)
        var i = 0
        while i + 8 <= n {
            let v = d.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                + (s.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) + bv)
            d.storeBytes(of: v, toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] += src[i] + b; i += 1 }
    }

    /// `dst[0..<n] += b`.
    @inline(__always)
    static func add(_ dst: UnsafeMutablePointer<Float>, plus b: Float, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst)
        let bv = SIMD8<Float>(repeating: b)
        var i = 0
        while i + 8 <= n {
            d.storeBytes(of: d.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) + bv, toByteOffset: i * 4,
                         as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] += b; i += 1 }
    }

    /// `dst[0..<n] = 0` for the one or two padding columns of a row: plain stores, where a loop would become a
    /// `memset` call costing more than the stores.
    @inline(__always)
    static func zeroFew(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        guard n > 0 else { return }
        dst[0] = 0
        guard n > 1 else { return }
        dst[1] = 0
        if n > 2 { zero(dst + 2, n - 2) }
    }

    /// `dst[0..<n] = 0`.
    @inline(__always)
    static func zero(_ dst: UnsafeMutablePointer<Float>, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst)
        var i = 0
        while i + 8 <= n {
            d.storeBytes(of: SIMD8<Float>(), toByteOffset: i * 4, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] = 0; i += 1 }
    }

    /// `dst[o] = src[2 * o]` for `o < n` (a stride-2 gather). Sixteen floats are loaded and the even ones
    /// kept; the last vector step stops where a load would read past `src[2 * (n - 1)]`.
    @inline(__always)
    static func copyEven(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
        var o = 0
        while o + 9 <= n {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: o * 8, as: SIMD16<Float>.self).evenHalf,
                         toByteOffset: o * 4, as: SIMD8<Float>.self)
            o += 8
        }
        // Eight left and o >= 1: one load starting one float earlier ends exactly at src[2 * (n - 1)].
        if n - o == 8 && o >= 1 {
            d.storeBytes(of: s.loadUnaligned(fromByteOffset: o * 8 - 4, as: SIMD16<Float>.self).oddHalf,
                         toByteOffset: o * 4, as: SIMD8<Float>.self)
            return
        }
        while o < n { dst[o] = src[2 * o]; o += 1 }
    }

    /// `dst[2 * o] += src[o]` for `o < n` (the adjoint of `copyEven`). The odd elements between are loaded and
    /// stored back unchanged, so they must not be written by another thread meanwhile (they belong to the
    /// same image row).
    @inline(__always)
    static func addEven(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ n: Int) {
        let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
        var o = 0
        while o + 9 <= n {
            var v = d.loadUnaligned(fromByteOffset: o * 8, as: SIMD16<Float>.self)
            v.evenHalf += s.loadUnaligned(fromByteOffset: o * 4, as: SIMD8<Float>.self)
            d.storeBytes(of: v, toByteOffset: o * 8, as: SIMD16<Float>.self)
            o += 8
        }
        if n - o == 8 && o >= 1 {
            var v = d.loadUnaligned(fromByteOffset: o * 8 - 4, as: SIMD16<Float>.self)
            v.oddHalf += s.loadUnaligned(fromByteOffset: o * 4, as: SIMD8<Float>.self)
            d.storeBytes(of: v, toByteOffset: o * 8 - 4, as: SIMD16<Float>.self)
            return
        }
        while o < n { dst[2 * o] += src[o]; o += 1 }
    }
}
