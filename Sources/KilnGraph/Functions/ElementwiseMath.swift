import Foundation
import KilnCore
import KilnKernels

/// nnabla's element-wise math of one input: Exp, Log, Abs, Floor, Ceil, Erf, SoftPlus, SoftSign, SELU,
/// HardSigmoid, ReLU6, MaximumScalar, MinimumScalar, Sign; and HardSwish, which nnabla lacks (ONNX has it).
/// Formulas, kinks and gradients are nnabla's (Floor and Ceil pass the gradient straight through, as nnabla's
/// do).
public enum MathFunctions {
    public static let all: [any Function.Type] = [
        Exp.self, Log.self, Abs.self, Floor.self, Ceil.self, Erf.self, SoftPlus.self, SoftSign.self, SELU.self,
        HardSigmoid.self, HardSwish.self, ReLU6.self, MaximumScalar.self, MinimumScalar.self, Sign.self,
    ]
}

/// An element-wise function of one float input whose backward reads the input: `y = forward(x)`,
/// `dx (+)= backward(x, dy)`.
protocol InputGradientUnary: Function {
    associatedtype ForwardOp: UnaryFloatOp
    associatedtype BackwardOp: BinaryFloatOp
    var forwardOp: ForwardOp { get }
    /// `(x, dy) -> dx`.
    var backwardOp: BackwardOp { get }
}

extension InputGradientUnary {
    public var forwardInPlaceInput: Int? { 0 }
    public var isCheapToRecompute: Bool { true }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        return [inputs[0]]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = b.inputs[0].f, y = b.outputs[0].f, n = b.inputs[0].count, op = forwardOp
        return { Elementwise.map(n, x, y, op) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let x = b.inputs[0]?.f else { throw error("backward needs the input value") }
        let dy = b.outputGrads[0].f, n = b.outputGrads[0].count, acc = b.accumulate[0], op = backwardOp
        return { Elementwise.zip(n, x, dy, dx, accumulate: acc, op) }
    }
}

/// A formula as an operation type, so kernels specialise on it.
struct UnaryFormula: UnaryFloatOp {
    let f: @Sendable (Float) -> Float
    func callAsFunction(_ x: Float) -> Float { f(x) }
}

struct BinaryFormula: BinaryFloatOp {
    let f: @Sendable (Float, Float) -> Float
    func callAsFunction(_ a: Float, _ b: Float) -> Float { f(a, b) }
}

/// A function with no arguments.
protocol ArgumentlessUnary: InputGradientUnary {
    init()
}

extension ArgumentlessUnary {
    public init(arguments a: inout ArgReader) throws { self.init() }
    public var arguments: [(String, ArgValue)] { [] }
}

/// `y = exp(x)`.
public struct Exp: ArgumentlessUnary {
    public static let typeName = "Exp"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { Foundation.exp($0) } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in dy * Foundation.exp(x) } }
}

/// `y = log(x)` (natural logarithm).
public struct Log: ArgumentlessUnary {
    public static let typeName = "Log"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { Foundation.log($0) } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in dy / x } }
}

/// `y = |x|`; the gradient at 0 is `dy`, as nnabla's.
public struct Abs: ArgumentlessUnary {
    public static let typeName = "Abs"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { Swift.abs($0) } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in x < 0 ? -dy : dy } }
}

/// `y = floor(x)`; the gradient passes straight through, as nnabla's.
public struct Floor: ArgumentlessUnary {
    public static let typeName = "Floor"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { $0.rounded(.down) } }
    var backwardOp: BinaryFormula { BinaryFormula { _, dy in dy } }
}

/// `y = ceil(x)`; the gradient passes straight through, as nnabla's.
public struct Ceil: ArgumentlessUnary {
    public static let typeName = "Ceil"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { $0.rounded(.up) } }
    var backwardOp: BinaryFormula { BinaryFormula { _, dy in dy } }
}

/// The error function.
public struct Erf: ArgumentlessUnary {
    public static let typeName = "Erf"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { Foundation.erf($0) } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in Float(2 / Double.pi.squareRoot()) * Foundation.exp(-x * x) * dy } }
}

/// `y = x / (1 + |x|)`.
public struct SoftSign: ArgumentlessUnary {
    public static let typeName = "SoftSign"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { $0 / (1 + Swift.abs($0)) } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in dy / ((1 + Swift.abs(x)) * (1 + Swift.abs(x))) } }
}

/// `y = clip(0.2 x + 0.5, 0, 1)`.
public struct HardSigmoid: ArgumentlessUnary {
    public static let typeName = "HardSigmoid"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { $0 > 2.5 ? 1 : $0 < -2.5 ? 0 : 0.2 * $0 + 0.5 } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in x <= 2.5 && -2.5 <= x ? dy * 0.2 : 0 } }
}

/// `y = x * relu6(x + 3) / 6` (ONNX's HardSwish; nnabla has no such function).
public struct HardSwish: ArgumentlessUnary {
    public static let typeName = "HardSwish"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { $0 * Swift.min(Swift.max($0 + 3, 0), 6) / 6 } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in x < -3 ? 0 : x > 3 ? dy : dy * (2 * x + 3) / 6 } }
}

/// `y = min(max(x, 0), 6)`.
public struct ReLU6: ArgumentlessUnary {
    public static let typeName = "ReLU6"
    public init() {}
    var forwardOp: UnaryFormula { UnaryFormula { Swift.min(Swift.max($0, 0), 6) } }
    var backwardOp: BinaryFormula { BinaryFormula { x, dy in 0 < x && x < 6 ? dy : 0 } }
}

/// `y = log(1 + exp(beta x)) / beta`, computed without overflow for large `|x|`.
public struct SoftPlus: InputGradientUnary {
    public static let typeName = "SoftPlus"
    public var beta: Double

    public init(beta: Double = 1.0) { self.beta = beta }
    public init(arguments a: inout ArgReader) throws { beta = try a.double("beta", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("beta", .double(beta))] }

    var forwardOp: UnaryFormula {
        let b = Float(beta)
        return UnaryFormula { x in
            x > 0 ? x + Foundation.log(Foundation.exp(-x * b) + 1) / b : Foundation.log(Foundation.exp(x * b) + 1) / b
        }
    }
    var backwardOp: BinaryFormula {
        let b = Float(beta)
        return BinaryFormula { x, dy in dy / (1 + Foundation.exp(-b * x)) }
    }
}

/// `y = scale * x` for positive x, `scale * alpha * (exp(x) - 1)` otherwise.
public struct SELU: InputGradientUnary {
    public static let typeName = "SELU"
    public var scale: Double
    public var alpha: Double

    public init(scale: Double = 1.05070098735548, alpha: Double = 1.673263242354377) {
        self.scale = scale
        self.alpha = alpha
    }
    public init(arguments a: inout ArgReader) throws {
        scale = try a.double("scale", default: 1.05070098735548)
        alpha = try a.double("alpha", default: 1.673263242354377)
    }
    public var arguments: [(String, ArgValue)] { [("scale", .double(scale)), ("alpha", .double(alpha))] }

    var forwardOp: UnaryFormula {
        let s = Float(scale), a = Float(alpha)
        return UnaryFormula { x in x > 0 ? s * x : s * a * (Foundation.exp(x) - 1) }
    }
    var backwardOp: BinaryFormula {
        let s = Float(scale), a = Float(alpha)
        return BinaryFormula { x, dy in x > 0 ? dy * s : dy * s * a * Foundation.exp(x) }
    }
}

/// `y = max(x, val)`; the gradient flows where `x > val`.
public struct MaximumScalar: InputGradientUnary {
    public static let typeName = "MaximumScalar"
    public var val: Double

    public init(val: Double = 1.0) { self.val = val }
    public init(arguments a: inout ArgReader) throws { val = try a.double("val", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("val", .double(val))] }

    var forwardOp: UnaryFormula {
        let v = Float(val)
        return UnaryFormula { $0 > v ? $0 : v }
    }
    var backwardOp: BinaryFormula {
        let v = Float(val)
        return BinaryFormula { x, dy in x > v ? dy : 0 }
    }
}

/// `y = min(x, val)`; the gradient flows where `x < val`.
public struct MinimumScalar: InputGradientUnary {
    public static let typeName = "MinimumScalar"
    public var val: Double

    public init(val: Double = 1.0) { self.val = val }
    public init(arguments a: inout ArgReader) throws { val = try a.double("val", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("val", .double(val))] }

    var forwardOp: UnaryFormula {
        let v = Float(val)
        return UnaryFormula { $0 < v ? $0 : v }
    }
    var backwardOp: BinaryFormula {
        let v = Float(val)
        return BinaryFormula { x, dy in x < v ? dy : 0 }
    }
}

/// `y = 1` for positive x, `-1` for negative, `alpha` at 0; the gradient passes straight through, as
/// nnabla's.
public struct Sign: InputGradientUnary {
    public static let typeName = "Sign"
    public var alpha: Double

    public init(alpha: Double = 1.0) { self.alpha = alpha }
    public init(arguments a: inout ArgReader) throws { alpha = try a.double("alpha", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("alpha", .double(alpha))] }

    var forwardOp: UnaryFormula {
        let a = Float(alpha)
        return UnaryFormula { $0 > 0 ? 1 : $0 < 0 ? -1 : a }
    }
    var backwardOp: BinaryFormula { BinaryFormula { _, dy in dy } }
}
