import KilnCore
import KilnKernels

/// Sum, Mean.
public enum ReductionFunctions {
    public static let all: [any Function.Type] = [Sum.self, Mean.self]
}

/// Sum and Mean share axis handling: `axes` nil means every axis (nnabla's default `range(x.ndim)`),
/// negative axes count from the end, duplicates are an error. Reducing every axis without `keep_dims`
/// gives a 0-d output (shape `[]`).
protocol AxesReduction: Function {
    var axes: [Int]? { get }
    var keepDims: Bool { get }
    init(axes: [Int]?, keepDims: Bool)
    static var isMean: Bool { get }
}

extension AxesReduction {
    public init(arguments a: inout ArgReader) throws {
        self.init(axes: try a.intsOrNil("axes"), keepDims: try a.bool("keep_dims", default: false))
    }

    /// `axes` is left out while it is the default (every axis), which depends on the input's rank.
    public var arguments: [(String, ArgValue)] {
        (axes.map { [("axes", ArgValue.ints($0))] } ?? []) + [("keep_dims", .bool(keepDims))]
    }

    /// Normalised, sorted axes for an input of rank `rank`.
    func resolvedAxes(_ rank: Int) throws -> [Int] {
        guard let axes else { return Array(0..<rank) }
        var out: [Int] = []
        for a in axes {
            let r = a < 0 ? a + rank : a
            guard r >= 0 && r < rank else { throw error("axis \(a) in axes \(axes) is out of range for an input of rank \(rank)") }
            guard !out.contains(r) else { throw error("axes \(axes) name axis \(r) more than once") }
            out.append(r)
        }
        return out.sorted()
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        let shape = inputs[0].shape
        let ax = try resolvedAxes(shape.count)
        var out: [Int] = []
        for d in shape.indices {
            if ax.contains(d) {
                if keepDims { out.append(1) }
            } else {
                out.append(shape[d])
            }
        }
        return [TensorType(out, .float32)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    func plan(_ shape: [Int]) throws -> (ReducePlan, Float) {
        let p = ReducePlan(shape: shape, axes: try resolvedAxes(shape.count))
        return (p, Self.isMean ? 1 / Float(p.reducedCount) : 1)
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let (p, scale) = try plan(b.inputs[0].shape)
        let x = b.inputs[0].f, y = b.outputs[0].f
        return { p.forward(x, y, scale: scale) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let (p, scale) = try plan(b.inputTypes[0].shape)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0]
        return { p.backward(dy, dx, scale: scale, accumulate: acc) }
    }
}

/// Sum over `axes` (default: all).
public struct Sum: AxesReduction {
    public static let typeName = "Sum"
    static let isMean = false
    /// nil means every axis.
    public var axes: [Int]?
    public var keepDims: Bool
    public init(axes: [Int]? = nil, keepDims: Bool = false) {
        self.axes = axes
        self.keepDims = keepDims
    }
}

/// Mean over `axes` (default: all).
public struct Mean: AxesReduction {
    public static let typeName = "Mean"
    static let isMean = true
    /// nil means every axis.
    public var axes: [Int]?
    public var keepDims: Bool
    public init(axes: [Int]? = nil, keepDims: Bool = false) {
        self.axes = axes
        self.keepDims = keepDims
    }
}

public extension F {
    /// nnabla's `F.sum(x, axis, keepdims)`; `axes` nil reduces every axis (recorded resolved in the graph).
    static func sum(_ x: Variable, axes: [Int]? = nil, keepDims: Bool = false) throws -> Variable {
        try apply1(Sum(axes: axes ?? Array(0..<x.shape.count), keepDims: keepDims), [x])
    }

    /// nnabla's `F.mean(x, axis, keepdims)`; `axes` nil reduces every axis (recorded resolved in the graph).
    static func mean(_ x: Variable, axes: [Int]? = nil, keepDims: Bool = false) throws -> Variable {
        try apply1(Mean(axes: axes ?? Array(0..<x.shape.count), keepDims: keepDims), [x])
    }
}
