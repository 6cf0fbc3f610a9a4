import Foundation
import KilnCore

/// A contiguous, row-major, 64-byte aligned tensor that owns its memory.
///
/// Parameters, inputs and requested outputs live in NDArrays; every other value of a compiled plan lives in
/// the plan's arena. The storage address never changes for the life of the array, so plans can bind it once.
public final class NDArray {
    public let type: TensorType
    public let raw: UnsafeMutableRawPointer
    public var shape: [Int] { type.shape }
    public var dtype: DType { type.dtype }
    public var count: Int { type.count }

    /// A zero-filled array. Throws for shapes that are invalid or too large.
    public convenience init(shape: [Int], dtype: DType = .float32) throws {
        _ = try Shapes.count(shape)
        self.init(validated: TensorType(shape, dtype))
    }

    /// A zero-filled array of a type whose shape was already checked by `Shapes.count`.
    package init(validated type: TensorType) {
        self.type = type
        let bytes = max(type.byteCount, 1)
        self.raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }

    public convenience init(shape: [Int], floats: [Float]) throws {
        try self.init(shape: shape, dtype: .float32)
        try setFloats(floats)
    }

    deinit { raw.deallocate() }

    public var floats: UnsafeMutablePointer<Float> { raw.assumingMemoryBound(to: Float.self) }
    public var int32s: UnsafeMutablePointer<Int32> { raw.assumingMemoryBound(to: Int32.self) }
    public var halves: UnsafeMutablePointer<Float16> { raw.assumingMemoryBound(to: Float16.self) }

    /// The contents converted to Float (int32 and float16 are converted element by element).
    public func toFloats() -> [Float] {
        switch dtype {
        case .float32: return Array(UnsafeBufferPointer(start: floats, count: count))
        case .int32: return (0..<count).map { Float(int32s[$0]) }
        case .float16: return (0..<count).map { Float(halves[$0]) }
        }
    }

    /// The contents as Int32 (floats are truncated toward zero, as nnabla casts labels).
    public func toInt32s() -> [Int32] {
        switch dtype {
        case .int32: return Array(UnsafeBufferPointer(start: int32s, count: count))
        case .float32: return (0..<count).map { Int32(clamping: Int(floats[$0].isFinite ? floats[$0] : 0)) }
        case .float16: return (0..<count).map { Int32(clamping: Int(Float(halves[$0]).isFinite ? Float(halves[$0]) : 0)) }
        }
    }

    /// Copies `values` in, converting to this array's dtype. The count must match.
    public func setFloats(_ values: [Float]) throws {
        guard values.count == count else {
            throw KilnError.invalidData("expected \(count) values for shape \(shape), got \(values.count)")
        }
        switch dtype {
        case .float32: values.withUnsafeBufferPointer { floats.update(from: $0.baseAddress!, count: count) }
        case .int32: for i in 0..<count { int32s[i] = Int32(clamping: Int(values[i].isFinite ? values[i] : 0)) }
        case .float16: for i in 0..<count { halves[i] = Float16(values[i]) }
        }
    }

    public func setInt32s(_ values: [Int32]) throws {
        guard values.count == count else {
            throw KilnError.invalidData("expected \(count) values for shape \(shape), got \(values.count)")
        }
        switch dtype {
        case .int32: values.withUnsafeBufferPointer { int32s.update(from: $0.baseAddress!, count: count) }
        case .float32: for i in 0..<count { floats[i] = Float(values[i]) }
        case .float16: for i in 0..<count { halves[i] = Float16(Float(values[i])) }
        }
    }

    public func fill(_ value: Float) {
        switch dtype {
        case .float32: floats.update(repeating: value, count: count)
        case .int32: int32s.update(repeating: Int32(value), count: count)
        case .float16: halves.update(repeating: Float16(value), count: count)
        }
    }

    public func zero() { raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(type.byteCount, 1)) }

    /// Copies the values of another array of the same shape, converting the dtype if needed.
    public func copy(from other: NDArray) {
        if other.type == type {
            raw.copyMemory(from: other.raw, byteCount: type.byteCount)
        } else if other.count == count {
            try? setFloats(other.toFloats())
        }
    }
}
