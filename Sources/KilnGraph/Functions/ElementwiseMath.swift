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

/// The gradient straight through: `dx = dy`.
struct PassGradient: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { dy } }

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
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { Foundation.exp(x) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { dy * Foundation.exp(x) } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = log(x)` (natural logarithm).
public struct Log: ArgumentlessUnary {
    public static let typeName = "Log"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { Foundation.log(x) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { dy / x } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = |x|`; the gradient at 0 is `dy`, as nnabla's.
public struct Abs: ArgumentlessUnary {
    public static let typeName = "Abs"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { Swift.abs(x) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { x < 0 ? -dy : dy } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = floor(x)`; the gradient passes straight through, as nnabla's.
public struct Floor: ArgumentlessUnary {
    public static let typeName = "Floor"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { x.rounded(.down) } }
    var forwardOp: Forward { Forward() }
    var backwardOp: PassGradient { PassGradient() }
}

/// `y = ceil(x)`; the gradient passes straight through, as nnabla's.
public struct Ceil: ArgumentlessUnary {
    public static let typeName = "Ceil"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { x.rounded(.up) } }
    var forwardOp: Forward { Forward() }
    var backwardOp: PassGradient { PassGradient() }
}

/// The error function.
public struct Erf: ArgumentlessUnary {
    public static let typeName = "Erf"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { Foundation.erf(x) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { Float(2 / Double.pi.squareRoot()) * Foundation.exp(-x * x) * dy } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = x / (1 + |x|)`.
public struct SoftSign: ArgumentlessUnary {
    public static let typeName = "SoftSign"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { x / (1 + Swift.abs(x)) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { dy / ((1 + Swift.abs(x)) * (1 + Swift.abs(x))) } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = clip(0.2 x + 0.5, 0, 1)`.
public struct HardSigmoid: ArgumentlessUnary {
    public static let typeName = "HardSigmoid"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { x > 2.5 ? 1 : x < -2.5 ? 0 : 0.2 * x + 0.5 } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { x <= 2.5 && -2.5 <= x ? dy * 0.2 : 0 } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = x * relu6(x + 3) / 6` (ONNX's HardSwish; nnabla has no such function).
public struct HardSwish: ArgumentlessUnary {
    public static let typeName = "HardSwish"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { x * Swift.min(Swift.max(x + 3, 0), 6) / 6 } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { x < -3 ? 0 : x > 3 ? dy : dy * (2 * x + 3) / 6 } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = min(max(x, 0), 6)`.
public struct ReLU6: ArgumentlessUnary {
    public static let typeName = "ReLU6"
    public init() {}
    struct Forward: UnaryFloatOp { func callAsFunction(_ x: Float) -> Float { Swift.min(Swift.max(x, 0), 6) } }
    struct Backward: BinaryFloatOp { func callAsFunction(_ x: Float, _ dy: Float) -> Float { 0 < x && x < 6 ? dy : 0 } }
    var forwardOp: Forward { Forward() }
    var backwardOp: Backward { Backward() }
}

/// `y = log(1 + exp(beta x)) / beta`, computed without overflow for large `|x|`.
public struct SoftPlus: InputGradientUnary {
    public static let typeName = "SoftPlus"
    public var beta: Double

    public init(beta: Double = 1.0) { self.beta = beta }
    public init(arguments a: inout ArgReader) throws { beta = try a.double("beta", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("beta", .double(beta))] }

    struct Forward: UnaryFloatOp {
        let b: Float
        func callAsFunction(_ x: Float) -> Float {
            x > 0 ? x + Foundation.log(Foundation.exp(-x * b) + 1) / b : Foundation.log(Foundation.exp(x * b) + 1) / b
        }
    }
    struct Backward: BinaryFloatOp {
        let b: Float
        func callAsFunction(_ x: Float, _ dy: Float) -> Float { dy / (1 + Foundation.exp(-b * x)) }
    }
    var forwardOp: Forward { Forward(b: Float(beta)) }
    var backwardOp: Backward { Backward(b: Float(beta)) }
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

    struct Forward: UnaryFloatOp {
        let s: Float, a: Float
        func callAsFunction(_ x: Float) -> Float { x > 0 ? s * x : s * a * (Foundation.exp(x) - 1) }
    }
    struct Backward: BinaryFloatOp {
        let s: Float, a: Float
        func callAsFunction(_ x: Float, _ dy: Float) -> Float { x > 0 ? dy * s : dy * s * a * Foundation.exp(x) }
    }
    var forwardOp: Forward { Forward(s: Float(scale), a: Float(alpha)) }
    var backwardOp: Backward { Backward(s: Float(scale), a: Float(alpha)) }
}

/// `y = max(x, val)`; the gradient flows where `x > val`.
public struct MaximumScalar: InputGradientUnary {
    public static let typeName = "MaximumScalar"
    public var val: Double

    public init(val: Double = 1.0) { self.val = val }
    public init(arguments a: inout ArgReader) throws { val = try a.double("val", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("val", .double(val))] }

    struct Forward: UnaryFloatOp {
        let v: Float
        func callAsFunction(_ x: Float) -> Float { x > v ? x : v }
    }
    struct Backward: BinaryFloatOp {
        let v: Float
        func callAsFunction(_ x: Float, _ dy: Float) -> Float { x > v ? dy : 0 }
    }
    var forwardOp: Forward { Forward(v: Float(val)) }
    var backwardOp: Backward { Backward(v: Float(val)) }
}

/// `y = min(x, val)`; the gradient flows where `x < val`.
public struct MinimumScalar: InputGradientUnary {
    public static let typeName = "MinimumScalar"
    public var val: Double

    public init(val: Double = 1.0) { self.val = val }
    public init(arguments a: inout ArgReader) throws { val = try a.double("val", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("val", .double(val))] }

    struct Forward: UnaryFloatOp {
        let v: Float
        func callAsFunction(_ x: Float) -> Float { x < v ? x : v }
    }
    struct Backward: BinaryFloatOp {
        let v: Float
        func callAsFunction(_ x: Float, _ dy: Float) -> Float { x < v ? dy : 0 }
    }
    var forwardOp: Forward { Forward(v: Float(val)) }
    var backwardOp: Backward { Backward(v: Float(val)) }
}

/// `y = 1` for positive x, `-1` for negative, `alpha` at 0; the gradient passes straight through, as
/// nnabla's.
public struct Sign: InputGradientUnary {
    public static let typeName = "Sign"
    public var alpha: Double

    public init(alpha: Double = 1.0) { self.alpha = alpha }
    public init(arguments a: inout ArgReader) throws { alpha = try a.double("alpha", default: 1.0) }
    public var arguments: [(String, ArgValue)] { [("alpha", .double(alpha))] }

    struct Forward: UnaryFloatOp {
        let a: Float
        func callAsFunction(_ x: Float) -> Float { x > 0 ? 1 : x < 0 ? -1 : a }
    }
    var forwardOp: Forward { Forward(a: Float(alpha)) }
    var backwardOp: PassGradient { PassGradient() }
}

public extension F {
    /// nnabla's `F.exp`.
    static func exp(_ x: Variable) throws -> Variable { try apply1(Exp(), [x]) }
    /// nnabla's `F.log`.
    static func log(_ x: Variable) throws -> Variable { try apply1(Log(), [x]) }
    /// nnabla's `F.abs`.
    static func abs(_ x: Variable) throws -> Variable { try apply1(Abs(), [x]) }
    /// nnabla's `F.floor`.
    static func floor(_ x: Variable) throws -> Variable { try apply1(Floor(), [x]) }
    /// nnabla's `F.ceil`.
    static func ceil(_ x: Variable) throws -> Variable { try apply1(Ceil(), [x]) }
    /// nnabla's `F.erf`.
    static func erf(_ x: Variable) throws -> Variable { try apply1(Erf(), [x]) }
    /// nnabla's `F.softplus`.
    static func softplus(_ x: Variable, beta: Double = 1.0) throws -> Variable { try apply1(SoftPlus(beta: beta), [x]) }
    /// nnabla's `F.softsign`.
    static func softsign(_ x: Variable) throws -> Variable { try apply1(SoftSign(), [x]) }
    /// nnabla's `F.selu`.
    static func selu(_ x: Variable, scale: Double = 1.05070098735548, alpha: Double = 1.673263242354377) throws -> Variable {
        try apply1(SELU(scale: scale, alpha: alpha), [x])
    }
    /// nnabla's `F.hard_sigmoid`.
    static func hardSigmoid(_ x: Variable) throws -> Variable { try apply1(HardSigmoid(), [x]) }
    /// ONNX's HardSwish, `x * relu6(x + 3) / 6` (nnabla has no such function).
    static func hardSwish(_ x: Variable) throws -> Variable { try apply1(HardSwish(), [x]) }
    /// nnabla's `F.relu6`.
    static func relu6(_ x: Variable) throws -> Variable { try apply1(ReLU6(), [x]) }
    /// nnabla's `F.maximum_scalar`.
    static func maximumScalar(_ x: Variable, val: Double = 1.0) throws -> Variable { try apply1(MaximumScalar(val: val), [x]) }
    /// nnabla's `F.minimum_scalar`.
    static func minimumScalar(_ x: Variable, val: Double = 1.0) throws -> Variable { try apply1(MinimumScalar(val: val), [x]) }
    /// nnabla's `F.sign`.
    static func sign(_ x: Variable, alpha: Double = 1.0) throws -> Variable { try apply1(Sign(alpha: alpha), [x]) }
}
