import Foundation
import KilnCore

/// Loops shared by the class-axis losses (SoftmaxCrossEntropy, CategoricalCrossEntropy, TopNError).
///
/// Their input x is seen as `[outer, classes, inner]` around the class axis and the label tensor as
/// `[outer, 1, inner]`: sample `j = o * inner + i` has its classes at `x[o*classes*inner + c*inner + i]`.
public enum LossKernels {
    /// x's layout around the class axis.
    public struct ClassLayout {
        public let outer: Int
        public let classes: Int
        public let inner: Int

        public init(shape: [Int], axis: Int) {
            outer = Shapes.product(shape, 0..<axis)
            classes = shape[axis]
            inner = Shapes.product(shape, (axis + 1)..<shape.count)
        }

        public var samples: Int { outer * inner }

        /// Offset in x of sample `j`'s class 0 (its classes follow at a stride of `inner`).
        @inline(__always)
        public func base(_ j: Int) -> Int {
            let o = j / inner
            return o * classes * inner + (j - o * inner)
        }
    }

    /// Throws when a label is `>= classes` (negative labels are the caller's business), naming the value
    /// and its position in the label tensor. Serial: it is one read per sample.
    public static func checkLabels(_ t: UnsafePointer<Int32>, _ layout: ClassLayout, function: String,
                                   labelShape: [Int]) throws {
        let n = layout.samples, c = Int32(clamping: layout.classes)
        for j in 0..<n where t[j] >= c {
            throw KilnError.invalidFunction(
                function: function,
                reason: "label \(t[j]) at position \(position(j, labelShape)) is out of range for \(layout.classes) classes")
        }
    }

    /// The multi-index of flat position `j` in `shape` (only for error messages).
    static func position(_ j: Int, _ shape: [Int]) -> [Int] {
        var rem = j
        var idx = [Int](repeating: 0, count: shape.count)
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] > 0 {
            idx[d] = rem % shape[d]
            rem /= shape[d]
        }
        return idx
    }

    /// `log(sum_c exp(x[c*stride]))`, computed stably around the maximum.
    @inline(__always)
    public static func logSumExp(_ x: UnsafePointer<Float>, _ classes: Int, _ stride: Int) -> Float {
        var m = -Float.infinity
        for c in 0..<classes { m = max(m, x[c * stride]) }
        if !m.isFinite { return m }
        var s: Float = 0
        for c in 0..<classes { s += expf(x[c * stride] - m) }
        return m + logf(s)
    }
}
