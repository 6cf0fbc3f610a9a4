import KilnCore
import KilnKernels

/// MaxPooling, AveragePooling, GlobalAveragePooling.
public enum PoolingFunctions {
    public static let all: [any Function.Type] = [MaxPooling.self, AveragePooling.self, GlobalAveragePooling.self]
}

/// Kernel, stride and pad of a pooling, with nnabla's defaults (stride = kernel, pad = 0) and checks.
///
/// Pooling applies to the last `kernel.count` dims. nnabla accepts only 2-D and 3-D kernels; Kiln also accepts
/// 1-D kernels (the same rules on one axis).
struct PoolingSpec {
    var kernel: [Int]
    var stride: [Int]
    var ignoreBorder: Bool
    var pad: [Int]
    var channelLast: Bool

    init(kernel: [Int], stride: [Int]?, ignoreBorder: Bool, pad: [Int]?, channelLast: Bool) {
        self.kernel = kernel
        self.stride = stride ?? kernel
        self.ignoreBorder = ignoreBorder
        self.pad = pad ?? [Int](repeating: 0, count: kernel.count)
        self.channelLast = channelLast
    }

    init(_ a: inout ArgReader) throws {
        guard let k = try a.intsOrNil("kernel") else {
            throw KilnError.invalidFunction(function: a.function, reason: "argument 'kernel' is required")
        }
        self.init(kernel: k, stride: try a.intsOrNil("stride"), ignoreBorder: try a.bool("ignore_border", default: true),
                  pad: try a.intsOrNil("pad"), channelLast: try a.bool("channel_last", default: false))
    }

    var arguments: [(String, ArgValue)] {
        [("kernel", .ints(kernel)), ("stride", .ints(stride)), ("ignore_border", .bool(ignoreBorder)),
         ("pad", .ints(pad)), ("channel_last", .bool(channelLast))]
    }

    /// Checks the arguments against the input and returns the output shape.
    func outputShape(_ x: TensorType, _ f: String) throws -> [Int] {
        func fail(_ r: String) -> KilnError { .invalidFunction(function: f, reason: r) }
        try Check.float(x, f, "x")
        try Check.channelFirst(channelLast, f)
        let nk = kernel.count
        guard (1...3).contains(nk) else { throw fail("kernel \(kernel) must have 1 to 3 dims (2 or 3 in nnabla)") }
        guard stride.count == nk else { throw fail("stride \(stride) must have as many dims as kernel \(kernel)") }
        guard pad.count == nk else { throw fail("pad \(pad) must have as many dims as kernel \(kernel)") }
        guard x.rank >= nk else { throw fail("input \(x) has fewer dims than kernel \(kernel)") }
        var out = x.shape
        for i in 0..<nk {
            guard kernel[i] >= 1 else { throw fail("kernel \(kernel) must be positive") }
            guard stride[i] >= 1 else { throw fail("stride \(stride) must be positive") }
            guard pad[i] >= 0, pad[i] < kernel[i] else {
                throw fail("pad \(pad) must be >= 0 and smaller than kernel \(kernel)")
            }
            let a = x.rank - nk + i
            guard x.shape[a] >= 1 else { throw fail("input \(x) has an empty pooled dim") }
            // Every other sum in the window arithmetic is at most this one (0 <= pad < kernel).
            _ = try (x.shape[a] + 2 * CheckedInt(pad[i])).get("\(f): padded input \(x.shape[a]) + 2 x pad \(pad[i])")
            guard let o = PoolWindows.outputSize(x.shape[a], kernel: kernel[i], stride: stride[i], pad: pad[i],
                                                 ignoreBorder: ignoreBorder) else {
                throw fail("kernel \(kernel) with pad \(pad) is larger than the input's pooled dims \(Array(x.shape[(x.rank - nk)...]))")
            }
            out[a] = o
        }
        return out
    }

    func windows(_ input: TensorType, _ output: TensorType, averageDivisor: Bool?) -> PoolWindows {
        PoolWindows(inShape: input.shape, outShape: output.shape, kernel: kernel, stride: stride, pad: pad,
                    averageDivisor: averageDivisor)
    }
}

/// Maximum over each window; padded cells never take part. The gradient goes to the first maximum of the
/// window in row-major order (recomputed from x in backward, so nothing is kept from forward).
public struct MaxPooling: Function {
    public static let typeName = "MaxPooling"
    var spec: PoolingSpec
    /// Whether channels come last (NHWC).
    package var channelLast: Bool { spec.channelLast }

    public init(kernel: [Int], stride: [Int]? = nil, ignoreBorder: Bool = true, pad: [Int]? = nil, channelLast: Bool = false) {
        spec = PoolingSpec(kernel: kernel, stride: stride, ignoreBorder: ignoreBorder, pad: pad, channelLast: channelLast)
    }

    public init(arguments a: inout ArgReader) throws { spec = try PoolingSpec(&a) }
    public var arguments: [(String, ArgValue)] { spec.arguments }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        return [TensorType(try spec.outputShape(inputs[0], Self.typeName))]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let g = spec.windows(b.inputs[0].type, b.outputs[0].type, averageDivisor: nil)
        let x = b.inputs[0].f, y = b.outputs[0].f
        return { PoolingKernels.maxForward(g, x, y) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        guard let x = b.inputs[0]?.f else { throw error("backward needs the input x") }
        let g = spec.windows(b.inputTypes[0], b.outputTypes[0], averageDivisor: nil)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0]
        return { PoolingKernels.maxBackward(g, x, dy, dx, accumulate: acc) }
    }
}

/// Mean over each window. The divisor is the window size before clipping to the input (`including_pad`,
/// the default) or the number of real input cells.
public struct AveragePooling: Function {
    public static let typeName = "AveragePooling"
    var spec: PoolingSpec
    public var includingPad: Bool

    public init(kernel: [Int], stride: [Int]? = nil, ignoreBorder: Bool = true, pad: [Int]? = nil,
                channelLast: Bool = false, includingPad: Bool = true) {
        spec = PoolingSpec(kernel: kernel, stride: stride, ignoreBorder: ignoreBorder, pad: pad, channelLast: channelLast)
        self.includingPad = includingPad
    }

    public init(arguments a: inout ArgReader) throws {
        spec = try PoolingSpec(&a)
        includingPad = try a.bool("including_pad", default: true)
    }

    public var arguments: [(String, ArgValue)] { spec.arguments + [("including_pad", .bool(includingPad))] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        return [TensorType(try spec.outputShape(inputs[0], Self.typeName))]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let g = spec.windows(b.inputs[0].type, b.outputs[0].type, averageDivisor: includingPad)
        let x = b.inputs[0].f, y = b.outputs[0].f
        return { PoolingKernels.averageForward(g, x, y) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let g = spec.windows(b.inputTypes[0], b.outputTypes[0], averageDivisor: includingPad)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0]
        return { PoolingKernels.averageBackward(g, dy, dx, accumulate: acc) }
    }
}

/// Mean over every dim after axis 1; the output is always `(N, C, 1, 1)`, whatever the input rank (>= 2).
public struct GlobalAveragePooling: Function {
    public static let typeName = "GlobalAveragePooling"

    public init() {}
    public init(arguments a: inout ArgReader) throws {}
    public var arguments: [(String, ArgValue)] { [] }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try Check.count(inputs, 1, Self.typeName)
        let x = inputs[0]
        try Check.float(x, Self.typeName, "x")
        guard x.rank >= 2 else { throw error("input \(x) must have at least 2 dims (N, C, ...)") }
        guard x.count > 0 || x.shape[0] * x.shape[1] == 0 else { throw error("input \(x) has an empty spatial dim") }
        return [TensorType([x.shape[0], x.shape[1], 1, 1])]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([false], [false])
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let s = b.inputs[0].shape
        let maps = s[0] * s[1], size = Shapes.product(s, 2..<s.count)
        let x = b.inputs[0].f, y = b.outputs[0].f
        return { PoolingKernels.globalAverageForward(maps: maps, size: size, x, y) }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        guard let dx = b.inputGrads[0]?.f else { return {} }
        let s = b.inputTypes[0].shape
        let maps = s[0] * s[1], size = Shapes.product(s, 2..<s.count)
        let dy = b.outputGrads[0].f, acc = b.accumulate[0]
        return { PoolingKernels.globalAverageBackward(maps: maps, size: size, dy, dx, accumulate: acc) }
    }
}

public extension F {
    /// nnabla's `F.max_pooling` (pools the last `kernel.count` dims; stride defaults to kernel, pad to 0).
    static func maxPooling(_ x: Variable, kernel: [Int], stride: [Int]? = nil, ignoreBorder: Bool = true,
                           pad: [Int]? = nil, channelLast: Bool = false) throws -> Variable {
        try apply1(MaxPooling(kernel: kernel, stride: stride, ignoreBorder: ignoreBorder, pad: pad,
                              channelLast: channelLast), [x])
    }

    /// nnabla's `F.average_pooling`.
    static func averagePooling(_ x: Variable, kernel: [Int], stride: [Int]? = nil, ignoreBorder: Bool = true,
                               pad: [Int]? = nil, channelLast: Bool = false, includingPad: Bool = true) throws -> Variable {
        try apply1(AveragePooling(kernel: kernel, stride: stride, ignoreBorder: ignoreBorder, pad: pad,
                                  channelLast: channelLast, includingPad: includingPad), [x])
    }

    /// nnabla's `F.global_average_pooling`: `(N, C, ...) -> (N, C, 1, 1)`.
    static func globalAveragePooling(_ x: Variable) throws -> Variable {
        try apply1(GlobalAveragePooling(), [x])
    }
}
