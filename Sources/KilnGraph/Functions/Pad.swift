import KilnCore
import KilnKernels

/// nnabla's Pad: `pad_width` holds (before, after) pairs for the last `pad_width.count / 2` axes; `mode` is
/// constant (`constant_value`), reflect (mirrored about the first and last elements, numpy's "reflect",
/// periodic when the padding exceeds the axis) or repeat (the edge value). Backward adds each output
/// gradient into the input element it was copied from.
public struct Pad: Function {
    public static let typeName = "Pad"
    public enum Mode: String, Sendable { case constant, reflect, `repeat` }
    public var padWidth: [Int]
    public var mode: Mode
    public var constantValue: Double

    public init(padWidth: [Int], mode: Mode = .constant, constantValue: Double = 0) {
        self.padWidth = padWidth
        self.mode = mode
        self.constantValue = constantValue
    }

    public init(arguments a: inout ArgReader) throws {
        guard let w = try a.intsOrNil("pad_width") else {
            throw KilnError.invalidFunction(function: Self.typeName, reason: "argument 'pad_width' is required")
        }
        let m = try a.string("mode", default: "constant")
        guard let mode = Mode(rawValue: m) else {
            throw KilnError.invalidFunction(function: Self.typeName, reason: "mode '\(m)' is not constant, reflect or repeat")
        }
        self.init(padWidth: w, mode: mode, constantValue: try a.double("constant_value", default: 0))
    }

    public var arguments: [(String, ArgValue)] {
        [("pad_width", .ints(padWidth)), ("mode", .string(mode.rawValue)), ("constant_value", .double(constantValue))]
    }

    public var isCheapToRecompute: Bool { true }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) { ([false], [false]) }

    /// Per axis of x: padding before and after (0 for axes `pad_width` does not cover).
    func pads(_ rank: Int) throws -> [(Int, Int)] {
        guard padWidth.count % 2 == 0, padWidth.count / 2 <= rank else {
            throw error("pad_width \(padWidth) must hold (before, after) pairs for at most \(rank) axes")
        }
        guard padWidth.allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }) else { throw error("pad_width \(padWidth) must be non-negative") }
        let lead = rank - padWidth.count / 2
        return (0..<rank).map { $0 < lead ? (0, 0) : (padWidth[2 * ($0 - lead)], padWidth[2 * ($0 - lead) + 1]) }
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        let x = inputs[0].shape
        let p = try pads(x.count)
        var out: [Int] = []
        for (d, n) in x.enumerated() {
            if mode != .constant && n == 0 && p[d].0 + p[d].1 > 0 { throw error("cannot pad an empty axis in \(mode) mode") }
            out.append(try (CheckedInt(n) + p[d].0 + p[d].1).get("Pad output"))
        }
        return [TensorType(out, .float32)]
    }

    /// The input index along an axis of size `n` that output position `i - before` copies, or nil (constant).
    @inline(__always)
    static func source(_ j: Int, _ n: Int, _ mode: Mode) -> Int? {
        if j >= 0 && j < n { return j }
        switch mode {
        case .constant: return nil
        case .`repeat`: return j < 0 ? 0 : n - 1
        case .reflect:
            if n == 1 { return 0 }
            let period = 2 * (n - 1)
            var k = j % period
            if k < 0 { k += period }
            return k < n ? k : period - k
        }
    }

    /// Calls `body(out, in)` for every output element with the input element it copies (nil: the constant).
    /// The per-axis counter lives on the stack: kernels allocate nothing while a plan runs.
    static func walk(_ x: [Int], _ y: [Int], _ p: [(Int, Int)], _ mode: Mode, _ body: (Int, Int?) -> Void) {
        let r = y.count, n = y.reduce(1, *)
        guard n > 0 else { return }
        let xs = Shapes.strides(x)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: max(r, 1)) { idx in
            idx.initialize(repeating: 0)
            for o in 0..<n {
                var src: Int? = 0
                for d in 0..<r {
                    guard let s = source(idx[d] - p[d].0, x[d], mode) else { src = nil; break }
                    src = src.map { $0 + s * xs[d] }
                }
                body(o, src)
                var d = r - 1
                while d >= 0 {
                    idx[d] += 1
                    if idx[d] < y[d] { break }
                    idx[d] = 0
                    d -= 1
                }
            }
        }
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let xs = b.inputs[0].shape, ys = b.outputs[0].shape, p = try pads(xs.count), mode = mode
        let x = b.inputs[0].f, y = b.outputs[0].f, c = Float(constantValue)
        return { Self.walk(xs, ys, p, mode) { o, i in y[o] = i.map { x[$0] } ?? c } }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let xs = b.inputTypes[0].shape, ys = b.outputTypes[0].shape, p = try pads(xs.count), mode = mode
        let dy = b.outputGrads[0].f, n = b.inputTypes[0].count, acc = b.accumulate[0]
        return {
            if !acc { dx.update(repeating: 0, count: n) }
            Self.walk(xs, ys, p, mode) { o, i in if let i { dx[i] += dy[o] } }
        }
    }
}

public extension F {
    /// nnabla's `F.pad(x, pad_width, mode, constant_value)`.
    static func pad(_ x: Variable, padWidth: [Int], mode: Pad.Mode = .constant, constantValue: Double = 0) throws -> Variable {
        try apply1(Pad(padWidth: padWidth, mode: mode, constantValue: constantValue), [x])
    }
}
