import Foundation
import KilnCore
import KilnKernels

/// Local response normalisation across channels (axis 1), as ONNX defines LRN (nnabla has no such function):
/// `y = x / (bias + alpha / size * s)^beta`, `s` the sum of x^2 over the channels
/// `[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]` that exist.
public struct LRN: Function {
    public static let typeName = "LRN"
    public var size: Int
    public var alpha: Double
    public var beta: Double
    public var bias: Double

    public init(size: Int, alpha: Double = 1e-4, beta: Double = 0.75, bias: Double = 1) {
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.bias = bias
    }

    public init(arguments a: inout ArgReader) throws {
        guard let size = try a.intOrNil("size") else {
            throw KilnError.invalidFunction(function: Self.typeName, reason: "argument 'size' is required")
        }
        self.init(size: size, alpha: try a.double("alpha", default: 1e-4), beta: try a.double("beta", default: 0.75),
                  bias: try a.double("bias", default: 1))
    }

    public var arguments: [(String, ArgValue)] {
        [("size", .int(size)), ("alpha", .double(alpha)), ("beta", .double(beta)), ("bias", .double(bias))]
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        guard inputs[0].rank >= 2 else { throw error("x \(inputs[0]) needs a channel axis 1") }
        guard size >= 1, size <= 1 << 20 else { throw error("size \(size) must be positive") }
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) { ([true], [false]) }

    /// Batch, channels, elements per channel, and the window's reach below and above a channel.
    func geometry(_ s: [Int]) -> (n: Int, c: Int, inner: Int, lo: Int, hi: Int) {
        (s[0], s[1], s[2...].reduce(1, *), (size - 1) / 2, size / 2)
    }

    /// `bias + alpha / size * sum of squares` at channel `c`, position `i` of batch `b`.
    @inline(__always)
    static func scale(_ x: UnsafeMutablePointer<Float>, _ g: (n: Int, c: Int, inner: Int, lo: Int, hi: Int),
                      _ b: Int, _ c: Int, _ i: Int, _ k: Double, _ bias: Double) -> Double {
        var s = 0.0
        for cc in max(0, c - g.lo)...min(g.c - 1, c + g.hi) {
            let v = Double(x[(b * g.c + cc) * g.inner + i])
            s += v * v
        }
        return bias + k * s
    }

    public func makeForward(_ bind: ForwardBinding) throws -> Kernel {
        let g = geometry(bind.inputs[0].shape)
        let x = bind.inputs[0].f, y = bind.outputs[0].f, k = alpha / Double(size), beta = beta, bias = bias
        return {
            for b in 0..<g.n {
                for c in 0..<g.c {
                    for i in 0..<g.inner {
                        let at = (b * g.c + c) * g.inner + i
                        y[at] = Float(Double(x[at]) / Foundation.pow(Self.scale(x, g, b, c, i, k, bias), beta))
                    }
                }
            }
        }
    }

    public func makeBackward(_ bind: BackwardBinding) throws -> Kernel {
        guard let dx = bind.inputGrads[0]?.f else { return {} }
        guard let x = bind.inputs[0]?.f else { throw error("backward needs x") }
        let g = geometry(bind.inputTypes[0].shape)
        let dy = bind.outputGrads[0].f, acc = bind.accumulate[0]
        let k = alpha / Double(size), beta = beta, bias = bias
        return {
            // dx_c = dy_c s_c^-beta - 2 k beta x_c * sum over channels d whose window holds c of
            // dy_d x_d s_d^(-beta-1).
            for b in 0..<g.n {
                for i in 0..<g.inner {
                    for c in 0..<g.c {
                        let at = (b * g.c + c) * g.inner + i
                        var v = Double(dy[at]) / Foundation.pow(Self.scale(x, g, b, c, i, k, bias), beta)
                        var sum = 0.0
                        for d in max(0, c - g.hi)...min(g.c - 1, c + g.lo) {
                            let ad = (b * g.c + d) * g.inner + i
                            sum += Double(dy[ad]) * Double(x[ad]) * Foundation.pow(Self.scale(x, g, b, d, i, k, bias), -beta - 1)
                        }
                        v -= 2 * k * beta * Double(x[at]) * sum
                        dx[at] = acc ? dx[at] + Float(v) : Float(v)
                    }
                }
            }
        }
    }
}

public extension F {
    /// ONNX's LRN across channels (nnabla has no such function).
    static func lrn(_ x: Variable, size: Int, alpha: Double = 1e-4, beta: Double = 0.75, bias: Double = 1) throws -> Variable {
        try apply1(LRN(size: size, alpha: alpha, beta: beta, bias: bias), [x])
    }
}
