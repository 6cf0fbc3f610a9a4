import Foundation
import KilnCore

/// A contiguous, row-major, 64-byte aligned tensor that owns its memory.
///
/// Parameters, inputs and requested outputs live in NDArrays; every other value of a compiled plan lives in
/// the plan's arena. The storage address never changes for the life of the array, so plans can bind it once.
public final class NDArray {
    public let type: TensorType
    public let raw: UnsafeMutableRawPointer
    /// Who owns the memory of an array that views someone else's (nil: this array allocated it).
    private let owner: AnyObject?
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
        owner = nil
    }

    /// An array over memory that `owner` keeps alive (a gradient bucket's region): the array neither
    /// allocates nor frees it.
    package init(viewing raw: UnsafeMutableRawPointer, type: TensorType, owner: AnyObject) {
        self.type = type
        self.raw = raw
        self.owner = owner
    }

    public convenience init(shape: [Int], floats: [Float]) throws {
        try self.init(shape: shape, dtype: .float32)
        try setFloats(floats)
    }

    deinit { if owner == nil { raw.deallocate() } }

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

    /// The contents as Int32. Float values must be integers within int32's range: anything else (1.5, inf,
    /// NaN, 1e30) is an error naming the index and the value rather than a truncated, clamped or trapping
    /// conversion.
    public func toInt32s() throws -> [Int32] {
        switch dtype {
        case .int32: return Array(UnsafeBufferPointer(start: int32s, count: count))
        case .float32: return try (0..<count).map { try NDArray.int32(floats[$0], at: $0, of: nil) }
        case .float16: return try (0..<count).map { try NDArray.int32(Float(halves[$0]), at: $0, of: nil) }
        }
    }

    /// Copies `values` in, converting to this array's dtype. The count must match. int32 takes only integers
    /// within its range and float16 only values within its range (or non-finite ones): otherwise the error
    /// names `name` (a variable, when given), the index and the value, and nothing is written.
    public func setFloats(_ values: [Float], name: String? = nil) throws {
        if dtype == .float32 {
            try checkCount(values.count)
            values.withUnsafeBufferPointer { floats.update(from: $0.baseAddress!, count: count) }
        } else {
            try setValues(values, name: name)
        }
    }

    /// `setFloats` for values of any floating-point type (a JSON file's doubles, exact for int32 data beyond
    /// float32's 2^24): float32 and float16 round to the nearest value, and a finite value beyond their range
    /// is an error, as is anything int32 cannot hold exactly.
    public func setValues<T: BinaryFloatingPoint>(_ values: [T], name: String? = nil) throws {
        try checkCount(values.count)
        switch dtype {
        case .float32:
            var out = [Float](repeating: 0, count: count)
            for i in 0..<count {
                out[i] = Float(values[i])
                if out[i].isInfinite && values[i].isFinite { throw NDArray.beyondRange(values[i], "float32", at: i, of: name) }
            }
            out.withUnsafeBufferPointer { floats.update(from: $0.baseAddress!, count: count) }
        case .int32:
            var out = [Int32](repeating: 0, count: count)
            for i in 0..<count { out[i] = try NDArray.int32(values[i], at: i, of: name) }
            out.withUnsafeBufferPointer { int32s.update(from: $0.baseAddress!, count: count) }
        case .float16:
            var out = [Float16](repeating: 0, count: count)
            for i in 0..<count {
                out[i] = Float16(Float(values[i]))
                if out[i].isInfinite && values[i].isFinite { throw NDArray.beyondRange(values[i], "float16", at: i, of: name) }
            }
            out.withUnsafeBufferPointer { halves.update(from: $0.baseAddress!, count: count) }
        }
    }

    func checkCount(_ n: Int) throws {
        guard n == count else { throw KilnError.invalidData("expected \(count) values for shape \(shape), got \(n)") }
    }

    /// `value` as an int32 if it is exactly one; otherwise an error naming the variable (`name`), the index and
    /// the value, and why: not finite, not an integer, or outside int32's range.
    package static func int32<T: BinaryFloatingPoint>(_ value: T, at index: Int, of name: String?) throws -> Int32 {
        if let i = Int32(exactly: value) { return i }
        let why = !value.isFinite ? "is not finite"
            : value.rounded(.towardZero) != value ? "is not an integer"
            : "is outside int32's range \(Int32.min)...\(Int32.max)"
        throw KilnError.invalidData("\(name.map { "\($0) is int32 but value" } ?? "int32 data: value") \(value) at index \(index) \(why)")
    }

    static func beyondRange<T: BinaryFloatingPoint>(_ value: T, _ type: String, at index: Int, of name: String?) -> KilnError {
        KilnError.invalidData("\(name.map { "\($0) is \(type) but value" } ?? "\(type) data: value") \(value) at index \(index) is beyond \(type)'s range")
    }

    public func setInt32s(_ values: [Int32]) throws {
        try checkCount(values.count)
        switch dtype {
        case .int32: values.withUnsafeBufferPointer { int32s.update(from: $0.baseAddress!, count: count) }
        case .float32: for i in 0..<count { floats[i] = Float(values[i]) }
        case .float16: for i in 0..<count { halves[i] = Float16(Float(values[i])) }
        }
    }

    /// Sets every element to `value` (for an int32 array an integer within int32's range, else an error).
    public func fill(_ value: Float) throws {
        switch dtype {
        case .float32: floats.update(repeating: value, count: count)
        case .int32: int32s.update(repeating: try NDArray.int32(value, at: 0, of: nil), count: count)
        case .float16: halves.update(repeating: Float16(value), count: count)
        }
    }

    /// The first NaN or infinite element (float32 and float16; int32 has none), with its index.
    public func firstNonFinite() -> (index: Int, value: Float)? {
        switch dtype {
        case .float32:
            for i in 0..<count where !floats[i].isFinite { return (i, floats[i]) }
        case .float16:
            for i in 0..<count where !halves[i].isFinite { return (i, Float(halves[i])) }
        case .int32: break
        }
        return nil
    }

    public func zero() { raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(type.byteCount, 1)) }

    /// Copies the values of another array of the same count, converting the dtype if needed (an error, with
    /// nothing copied, for a count that differs or a value the dtype cannot hold, as `setFloats`).
    public func copy(from other: NDArray) throws {
        if other.type == type {
            raw.copyMemory(from: other.raw, byteCount: type.byteCount)
        } else {
            try setFloats(other.toFloats())
        }
    }
}
