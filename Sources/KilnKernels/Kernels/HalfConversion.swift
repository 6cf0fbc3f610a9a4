/// Conversions between float16 storage and float32 arithmetic.
///
/// Built for a CPU with F16C (the release build's `-target-cpu haswell`) each loop becomes `vcvtph2ps` /
/// `vcvtps2ph` over eight lanes; without it Swift calls a library routine per element, which is correct but
/// slow (debug and test builds). Rounding is IEEE round-to-nearest-even, and values beyond float16's range
/// become infinities: an overflowing gradient shows up as inf, which is what dynamic loss scaling detects.
public enum HalfConversion {
    public static func widen(_ n: Int, _ src: UnsafePointer<Float16>, _ dst: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= n {
            let h = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float16>.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD8<Float>(h), as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { dst[i] = Float(src[i]); i += 1 }
    }

    public static func narrow(_ n: Int, _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float16>) {
        var i = 0
        while i + 8 <= n {
            let f = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD8<Float16>(f), as: SIMD8<Float16>.self)
            i += 8
        }
        while i < n { dst[i] = Float16(src[i]); i += 1 }
    }

    /// `x[i] = Float(Float16(x[i]))`: float32 storage of float16 values.
    public static func round(_ n: Int, _ x: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= n {
            let raw = UnsafeMutableRawPointer(x + i)
            let f = raw.loadUnaligned(as: SIMD8<Float>.self)
            raw.storeBytes(of: SIMD8<Float>(SIMD8<Float16>(f)), as: SIMD8<Float>.self)
            i += 8
        }
        while i < n { x[i] = Float(Float16(x[i])); i += 1 }
    }
}
