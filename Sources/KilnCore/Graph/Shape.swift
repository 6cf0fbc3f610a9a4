import Foundation

/// Shape helpers. A shape is a plain `[Int]` in row-major order; `[]` is a 0-d scalar.
public enum Shapes {
    /// Number of elements, checking every dimension and the product for overflow.
    public static func count(_ shape: [Int], context: String = "shape") throws -> Int {
        var n = 1
        for d in shape {
            guard d >= 0 else { throw KilnError.invalidShape("\(context) \(shape) has a negative dimension") }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard !o, p <= maxElements else {
                throw KilnError.invalidShape("\(context) \(shape) has too many elements")
            }
            n = p
        }
        return n
    }

    /// The largest tensor Kiln accepts: one whose float32 bytes fit in this machine's physical memory (so
    /// that an allocation never aborts the process), and never more than 2^40 elements.
    public static let maxElements: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        let physical = pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size).partialValue : 1 << 34
        return min(1 << 40, max(physical / 4, 1 << 20))
    }()

    /// Row-major strides of a shape.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            s[i] = acc
            acc *= shape[i]
        }
        return s
    }

    /// Product of `shape[range]` (no overflow check: callers use validated shapes).
    public static func product(_ shape: [Int], _ range: Range<Int>) -> Int {
        var p = 1
        for i in range { p *= shape[i] }
        return p
    }

    /// Normalises a possibly negative axis; throws when it is out of range.
    public static func axis(_ a: Int, rank: Int, function: String) throws -> Int {
        let r = a < 0 ? a + rank : a
        guard r >= 0 && r < max(rank, 1) else {
            throw KilnError.invalidFunction(function: function, reason: "axis \(a) is out of range for rank \(rank)")
        }
        return r
    }
}

/// The static type of a value in a graph: its shape and element type.
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
    public var shape: [Int]
    public var dtype: DType

    public init(_ shape: [Int], _ dtype: DType = .float32) {
        self.shape = shape
        self.dtype = dtype
    }

    /// Element count (shapes inside a graph were validated when they were created).
    public var count: Int { shape.reduce(1, *) }
    public var byteCount: Int { count * dtype.byteSize }
    public var rank: Int { shape.count }

    public var description: String {
        "\(dtype.rawValue)[\(shape.map(String.init).joined(separator: ","))]"
    }
}
