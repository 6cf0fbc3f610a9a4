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
}
