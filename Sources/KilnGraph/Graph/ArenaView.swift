import KilnCore
import KilnKernels

/// Where a plan run left a value inside an arena. Holds the arena, so reading a variable's `d` after a run
/// stays safe however long the variable lives.
///
/// It lives in KilnGraph although arenas belong to KilnRuntime: a `Variable` stores one, and this layer must
/// not depend on the runtime. Nothing here knows what an arena is: it is memory someone else owns (`owner`,
/// kept alive by the view), a pointer into it and the element type stored there. KilnRuntime makes them.
package final class ArenaView {
    let owner: AnyObject
    let pointer: UnsafeMutableRawPointer
    /// How the value is stored there (float16 in half-precision plans).
    let dtype: DType
    /// Quantized plans: the value is held as 8-bit codes of this grid (read back as the floats they stand for).
    let codes: QuantizedCodes?
    /// Cleared when the owner runs again and the slot may hold something else.
    package var isValid = true

    package init(owner: AnyObject, pointer: UnsafeMutableRawPointer, dtype: DType, codes: QuantizedCodes? = nil) {
        self.owner = owner
        self.pointer = pointer
        self.dtype = dtype
        self.codes = codes
    }

    func floats(count: Int) -> [Float] {
        if let codes {
            var out = [Float](repeating: 0, count: count)
            out.withUnsafeMutableBufferPointer { QuantizedProduct.dequantize(pointer, codes, count: count, into: $0.baseAddress!) }
            return out
        }
        switch dtype {
        case .float32: return Array(UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: Float.self), count: count))
        case .int32:
            let p = pointer.assumingMemoryBound(to: Int32.self)
            return (0..<count).map { Float(p[$0]) }
        case .float16:
            let p = pointer.assumingMemoryBound(to: Float16.self)
            return (0..<count).map { Float(p[$0]) }
        }
    }
}
