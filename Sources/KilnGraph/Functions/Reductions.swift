import KilnCore
import KilnKernels

/// Sum, Mean, Max, Min.
public enum ReductionFunctions {
    public static let all: [any Function.Type] = [Sum.self, Mean.self, Max.self, Min.self]
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

/// Max and Min over `axes` (default: all). The gradient goes to the first element (in memory order) that
/// holds the extreme, as nnabla's index does. nnabla's `with_index` and `only_index` outputs are not
/// supported.
protocol ExtremeReduction: AxesReduction {
    static var isMax: Bool { get }
}

extension ExtremeReduction {
    static var isMean: Bool { false }

    public init(arguments a: inout ArgReader) throws {
        let axes = try a.intsOrNil("axes"), keep = try a.bool("keep_dims", default: false)
        if try a.bool("with_index", default: false) || a.bool("only_index", default: false) {
            throw KilnError.invalidFunction(function: Self.typeName, reason: "with_index and only_index are not supported")
        }
        self.init(axes: axes, keepDims: keep)
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true], [true])
    }

    /// One flag per output: whether its gradient has been given to an element yet.
    public func backwardWorkspace(_ b: TypeBinding) -> Int { b.outputs[0].count }

    /// For each input element, the index of its output: the input's strides with the reduced axes' zeroed.
    func outputStrides(_ shape: [Int]) throws -> [Int] {
        let ax = Set(try resolvedAxes(shape.count))
        var keep = shape
        for a in ax { keep[a] = 1 }
        let ks = Shapes.strides(keep)
        return shape.indices.map { ax.contains($0) ? 0 : ks[$0] }
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let shape = b.inputs[0].shape, os = try outputStrides(shape)
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count, m = b.outputs[0].count
        let isMax = Self.isMax
        return {
            for o in 0..<m { y[o] = isMax ? -Float.infinity : Float.infinity }
            ExtremeIndexing.forEach(shape, os) { i, o in
                let v = x[i]
                if isMax ? v > y[o] : v < y[o] { y[o] = v }
                if v.isNaN { y[o] = v }
            }
            _ = n
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let x = b.inputs[0]?.f, let y = b.outputs[0]?.f, let ws = b.workspace else {
            throw error("backward needs the input, the output and its workspace")
        }
        let shape = b.inputTypes[0].shape, os = try outputStrides(shape)
        let dy = b.outputGrads[0].f, n = b.inputTypes[0].count, m = b.outputTypes[0].count, acc = b.accumulate[0]
        let given = ws.assumingMemoryBound(to: UInt8.self)
        return {
            if !acc { dx.update(repeating: 0, count: n) }
            given.update(repeating: 0, count: m)
            ExtremeIndexing.forEach(shape, os) { i, o in
                if given[o] == 0 && x[i] == y[o] {
                    dx[i] += dy[o]
                    given[o] = 1
                }
            }
        }
    }
}

enum ExtremeIndexing {
    /// Calls `body(i, o)` for every input element `i` in memory order with its output index `o`.
    @inline(__always)
    static func forEach(_ shape: [Int], _ outStrides: [Int], _ body: (Int, Int) -> Void) {
        let r = shape.count
        let n = shape.reduce(1, *)
        guard n > 0 else { return }
        if r == 0 { body(0, 0); return }
        // The counter lives on the stack: kernels allocate nothing while a plan runs.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: r) { idx in
            idx.initialize(repeating: 0)
            var o = 0
            for i in 0..<n {
                body(i, o)
                var d = r - 1
                while d >= 0 {
                    idx[d] += 1
                    o += outStrides[d]
                    if idx[d] < shape[d] { break }
                    o -= outStrides[d] * shape[d]
                    idx[d] = 0
                    d -= 1
                }
            }
        }
    }
}

/// Max over `axes` (default: all).
public struct Max: ExtremeReduction {
    public static let typeName = "Max"
    static let isMax = true
    public var axes: [Int]?
    public var keepDims: Bool
    public init(axes: [Int]? = nil, keepDims: Bool = false) {
        self.axes = axes
        self.keepDims = keepDims
    }
}

/// Min over `axes` (default: all).
public struct Min: ExtremeReduction {
    public static let typeName = "Min"
    static let isMax = false
    public var axes: [Int]?
    public var keepDims: Bool
    public init(axes: [Int]? = nil, keepDims: Bool = false) {
        self.axes = axes
        self.keepDims = keepDims
    }
}

public extension F {
    /// nnabla's `F.max(x, axis, keepdims)` (without `with_index` / `only_index`); `axes` nil reduces every axis.
    static func max(_ x: Variable, axes: [Int]? = nil, keepDims: Bool = false) throws -> Variable {
        try apply1(Max(axes: axes, keepDims: keepDims), [x])
    }

    /// nnabla's `F.min(x, axis, keepdims)` (without `with_index` / `only_index`); `axes` nil reduces every axis.
    static func min(_ x: Variable, axes: [Int]? = nil, keepDims: Bool = false) throws -> Variable {
        try apply1(Min(axes: axes, keepDims: keepDims), [x])
    }
}
