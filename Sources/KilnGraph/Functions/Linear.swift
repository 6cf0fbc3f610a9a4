import KilnCore
import KilnKernels

/// Affine, Convolution, Deconvolution.
public enum LinearFunctions {
    public static let all: [any Function.Type] = [Affine.self, Convolution.self, Deconvolution.self, BatchMatmul.self]
}

// MARK: - Affine

/// `y = x_flat @ W + b` with `x_flat = x.reshape(prod(x.shape[:base_axis]), -1)`, W `(inmaps, outmaps...)`
/// (possibly N-D), optional bias of shape `W.shape[1:]`; output `x.shape[:base_axis] + W.shape[1:]`.
public struct Affine: Function {
    public static let typeName = "Affine"
    public var baseAxis: Int

    public init(baseAxis: Int = 1) { self.baseAxis = baseAxis }
    public init(arguments a: inout ArgReader) throws { baseAxis = try a.int("base_axis", default: 1) }
    public var arguments: [(String, ArgValue)] { [("base_axis", .int(baseAxis))] }

    /// Rows, inner size and output columns of the product.
    private func sizes(_ inputs: [TensorType]) throws -> (rows: Int, inner: Int, cols: Int, outShape: [Int]) {
        try Check.count(inputs, in: 2...3, Self.typeName)
        try Check.float(inputs[0], Self.typeName, "x")
        try Check.float(inputs[1], Self.typeName, "weight")
        let x = inputs[0].shape, w = inputs[1].shape
        let base = baseAxis < 0 ? baseAxis + x.count : baseAxis
        guard base >= 0 && base < x.count else {
            throw error("base_axis \(baseAxis) is out of range for x of shape \(x)")
        }
        guard w.count >= 2 else { throw error("weight must be (inmaps, outmaps...), got shape \(w)") }
        let inner = Shapes.product(x, base..<x.count)
        guard w[0] == inner else {
            throw error("weight shape \(w) does not match x \(x) with base_axis \(baseAxis): need weight.shape[0] == \(inner)")
        }
        let outTail = Array(w[1...])
        if inputs.count == 3 {
            try Check.float(inputs[2], Self.typeName, "bias")
            guard inputs[2].shape == outTail else {
                throw error("bias shape \(inputs[2].shape) must be weight.shape[1:] = \(outTail)")
            }
        }
        return (Shapes.product(x, 0..<base), inner, Shapes.product(w, 1..<w.count), Array(x[0..<base]) + outTail)
    }

    public func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        [TensorType(try sizes(inputs).outShape, .float32)]
    }

    public func backwardReads(inputCount: Int, outputCount: Int) -> (inputs: [Bool], outputs: [Bool]) {
        ([true, true, false].prefix(inputCount).map { $0 }, [Bool](repeating: false, count: outputCount))
    }

    public func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let s = try sizes(b.inputs.map { $0.type })
        let x = b.inputs[0].f, w = b.inputs[1].f, y = b.outputs[0].f
        let bias = b.inputs.count == 3 ? b.inputs[2].f : nil
        let rows = s.rows, inner = s.inner, cols = s.cols
        return {
            if let bias {
                for r in 0..<rows { (y + r * cols).update(from: bias, count: cols) }
            }
            Gemm.sgemm(m: rows, n: cols, k: inner, a: x, b: w, beta: bias == nil ? 0 : 1, c: y)
        }
    }

    public func makeBackward(_ b: BackwardBinding) throws -> Kernel {
        let s = try sizes(b.inputTypes)
        let rows = s.rows, inner = s.inner, cols = s.cols
        let dy = b.outputGrads[0].f
        let dx = b.inputGrads[0]?.f, dw = b.inputGrads[1]?.f
        let db = b.inputGrads.count == 3 ? b.inputGrads[2]?.f : nil
        let acc = b.accumulate
        let x = b.inputs[0]?.f, w = b.inputs[1]?.f
        if dx != nil && w == nil || dw != nil && x == nil {
            throw error("backward needs the input and weight values")
        }
        return {
            if let dx, let w {
                // dx[rows, inner] = dy[rows, cols] @ W^T
                Gemm.sgemm(transB: true, m: rows, n: inner, k: cols, a: dy, b: w, beta: acc[0] ? 1 : 0, c: dx)
            }
            if let dw, let x {
                // dW[inner, cols] = x^T @ dy
                Gemm.sgemm(transA: true, m: inner, n: cols, k: rows, a: x, b: dy, beta: acc[1] ? 1 : 0, c: dw)
            }
            if let db {
                if !acc[2] { db.update(repeating: 0, count: cols) }
                for r in 0..<rows {
                    let row = dy + r * cols
                    for c in 0..<cols { db[c] += row[c] }
                }
            }
        }
    }
}

// MARK: - Convolution arguments shared with deconvolution

/// Per-dimension argument resolved against the spatial rank: nil or empty means nnabla's default.
private func resolve(_ v: [Int]?, rank: Int, default d: Int, name: String, _ f: String) throws -> [Int] {
    guard let v, !v.isEmpty else { return [Int](repeating: d, count: rank) }
    guard v.count == rank else {
        throw KilnError.invalidFunction(function: f, reason: "\(name) \(v) must have one value per spatial dimension (\(rank))")
    }
    return v
}

/// Layout checks common to Convolution and Deconvolution; returns base axis, batch, channels, spatial sizes,
/// kernel and resolved pad/stride/dilation.
private struct ConvArgs {
    var base: Int
    var batch: Int
    var channels: Int
    var spatial: [Int]
    var kernel: [Int]
    var pad: [Int]
    var stride: [Int]
    var dilation: [Int]
    var group: Int
    /// The function the errors name.
    var function: String

    init(_ inputs: [TensorType], baseAxis: Int, pad: [Int]?, stride: [Int]?, dilation: [Int]?, group: Int,
         channelLast: Bool, _ f: String) throws {
        func fail(_ r: String) -> KilnError { .invalidFunction(function: f, reason: r) }
        try Check.count(inputs, in: 2...3, f)
        try Check.float(inputs[0], f, "x")
        try Check.float(inputs[1], f, "weight")
        if inputs.count == 3 { try Check.float(inputs[2], f, "bias") }
        try Check.channelFirst(channelLast, f)
        let x = inputs[0].shape, w = inputs[1].shape
        guard w.count >= 3 else {
            throw fail("weight must have a channel pair and at least one kernel dimension, got shape \(w)")
        }
        let d = w.count - 2
        base = baseAxis < 0 ? baseAxis + x.count : baseAxis
        guard base >= 0, x.count == base + 1 + d else {
            throw fail("x of shape \(x) with base_axis \(baseAxis) does not match a \(d)-D kernel (weight \(w)): x needs rank base_axis + 1 + \(d)")
        }
        guard group >= 1 else { throw fail("group must be >= 1, got \(group)") }
        self.group = group
        function = f
        batch = Shapes.product(x, 0..<base)
        channels = x[base]
        spatial = Array(x[(base + 1)...])
        kernel = Array(w[2...])
        self.pad = try resolve(pad, rank: d, default: 0, name: "pad", f)
        self.stride = try resolve(stride, rank: d, default: 1, name: "stride", f)
        self.dilation = try resolve(dilation, rank: d, default: 1, name: "dilation", f)
        guard self.pad.allSatisfy({ $0 >= 0 }) else { throw fail("pad \(self.pad) must be >= 0") }
        guard self.stride.allSatisfy({ $0 >= 1 }) else { throw fail("stride \(self.stride) must be >= 1") }
        guard self.dilation.allSatisfy({ $0 >= 1 }) else { throw fail("dilation \(self.dilation) must be >= 1") }
        guard kernel.allSatisfy({ $0 >= 1 }) else { throw fail("kernel dimensions of weight \(w) must be >= 1") }
    }

    /// The engine geometry and the output shape `x.shape[:base] + [outmaps] + out`, after checking the bias
    /// against `outmaps` (`outmapsSource` says where that number comes from). A convolution's input is the
    /// engine's image side and its output the column side; a deconvolution (`transposed`) the other way round.
    func result(_ inputs: [TensorType], outmaps: Int, out: [Int], transposed: Bool,
                outmapsSource: String) throws -> (ConvGeometry, [Int]) {
        if inputs.count == 3 {
            guard inputs[2].shape == [outmaps] else {
                throw KilnError.invalidFunction(function: function,
                                                reason: "bias shape \(inputs[2].shape) must be [\(outmaps)] (\(outmapsSource))")
            }
        }
        let g = transposed
            ? ConvGeometry(batch: batch, channels: outmaps, outmaps: channels, group: group, image: out, col: spatial,
                           kernel: kernel, pad: pad, stride: stride, dilation: dilation)
            : ConvGeometry(batch: batch, channels: channels, outmaps: outmaps, group: group, image: spatial, col: out,
                           kernel: kernel, pad: pad, stride: stride, dilation: dilation)
        return (g, Array(inputs[0].shape[0..<base]) + [outmaps] + out)
    }
}

// MARK: - Convolution

/// N-D grouped convolution, channels first: x `(*batch, C, *spatial)` with `base_axis` batch dims,
/// W `(outmaps, C/group, *kernel)`, optional bias `(outmaps,)`. Output size per dimension
/// `floor((L + 2p - (d*(k-1)+1)) / s) + 1`. Empty or absent pad/stride/dilation mean nnabla's defaults
/// (0, 1, 1 per spatial dimension).
public struct Convolution: ConvolutionFunction {
    public static let typeName = "Convolution"
    public var baseAxis: Int
    public var pad: [Int]?
    public var stride: [Int]?
    public var dilation: [Int]?
    public var group: Int
    public var channelLast: Bool

    public init(baseAxis: Int = 1, pad: [Int]? = nil, stride: [Int]? = nil, dilation: [Int]? = nil,
                group: Int = 1, channelLast: Bool = false) {
        self.baseAxis = baseAxis
        self.pad = pad
        self.stride = stride
        self.dilation = dilation
        self.group = group
        self.channelLast = channelLast
    }

    public init(arguments a: inout ArgReader) throws {
        baseAxis = try a.int("base_axis", default: 1)
        pad = try a.intsOrNil("pad")
        stride = try a.intsOrNil("stride")
        dilation = try a.intsOrNil("dilation")
        group = try a.int("group", default: 1)
        channelLast = try a.bool("channel_last", default: false)
    }

    /// Per-dimension arguments not given are reported as `[]` (meaning nnabla's defaults); `F.convolution`
    /// always fills them in from the weight's rank.
    public var arguments: [(String, ArgValue)] {
        [("base_axis", .int(baseAxis)), ("pad", .ints(pad ?? [])), ("stride", .ints(stride ?? [])),
         ("dilation", .ints(dilation ?? [])), ("group", .int(group)), ("channel_last", .bool(channelLast))]
    }

    /// These arguments checked against the inputs, errors naming `function` (Deconvolution's too).
    fileprivate func resolved(_ inputs: [TensorType], _ function: String) throws -> ConvArgs {
        try ConvArgs(inputs, baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation, group: group,
                     channelLast: channelLast, function)
    }

    package func geometry(_ inputs: [TensorType]) throws -> (ConvGeometry, [Int]) {
        let a = try resolved(inputs, Self.typeName)
        let x = inputs[0].shape, w = inputs[1].shape
        let outmaps = w[0]
        guard a.channels % group == 0 else {
            throw error("group \(group) does not divide the \(a.channels) input channels of x \(x)")
        }
        guard outmaps % group == 0 else {
            throw error("group \(group) does not divide the \(outmaps) output maps of weight \(w)")
        }
        guard w[1] * group == a.channels else {
            throw error("weight \(w) expects \(w[1] * group) input channels (weight.shape[1] * group), x \(x) has \(a.channels) at base_axis")
        }
        var out = [Int]()
        for i in 0..<a.spatial.count {
            let span = try (CheckedInt(a.dilation[i]) * (a.kernel[i] - 1) + 1)
                .get("\(Self.typeName): kernel span dilation \(a.dilation[i]) x (kernel \(a.kernel[i]) - 1) + 1")
            let padded = try (a.spatial[i] + 2 * CheckedInt(a.pad[i]))
                .get("\(Self.typeName): padded input \(a.spatial[i]) + 2 x pad \(a.pad[i])")
            guard padded >= span else {
                throw error("kernel \(a.kernel) with dilation \(a.dilation) spans \(span) > padded input \(padded) in spatial dimension \(i) of x \(x)")
            }
            out.append((padded - span) / a.stride[i] + 1)
        }
        return try a.result(inputs, outmaps: outmaps, out: out, transposed: false, outmapsSource: "weight.shape[0]")
    }

    func forwardKernel(_ f: ConvolutionForwardBuffers) -> Kernel {
        { f.engine.forward(image: f.x, weight: f.w, col: f.y, bias: f.bias, accumulate: false, workspace: f.workspace) }
    }

    func backwardKernel(_ g: ConvolutionBackwardBuffers) -> Kernel {
        {
            if let dx = g.dx, let w = g.w {
                g.engine.backwardData(col: g.dy, weight: w, image: dx, bias: nil, accumulate: g.accumulate[0],
                                      workspace: g.workspace)
            }
            if let dw = g.dw, let x = g.x {
                g.engine.backwardWeight(image: x, col: g.dy, weightGrad: dw, accumulate: g.accumulate[1],
                                        workspace: g.workspace)
            }
            // The bias gradient sums dy, the engine's column side.
            if let db = g.db {
                ConvolutionEngine.channelSums(g.dy, batch: g.engine.batch, channels: g.engine.outmaps,
                                              count: g.engine.colCount, into: db, accumulate: g.accumulate[2])
            }
        }
    }
}

// MARK: - Deconvolution

/// N-D grouped transposed convolution, channels first: x `(*batch, C, *spatial)`, W `(C, outmaps/group,
/// *kernel)`, optional bias `(outmaps,)`. Output size `s*(L-1) - 2p + d*(k-1) + 1 + output_padding` with
/// `output_padding < stride`. It is the gradient of a convolution with the same weight w.r.t. its input:
/// it holds that convolution's arguments as `convolution`, and adds `outputPadding`.
public struct Deconvolution: ConvolutionFunction {
    public static let typeName = "Deconvolution"
    /// The convolution this is the transpose of: the arguments the two share.
    var convolution: Convolution
    public var outputPadding: [Int]?

    public var baseAxis: Int {
        get { convolution.baseAxis }
        set { convolution.baseAxis = newValue }
    }
    public var pad: [Int]? {
        get { convolution.pad }
        set { convolution.pad = newValue }
    }
    public var stride: [Int]? {
        get { convolution.stride }
        set { convolution.stride = newValue }
    }
    public var dilation: [Int]? {
        get { convolution.dilation }
        set { convolution.dilation = newValue }
    }
    public var group: Int {
        get { convolution.group }
        set { convolution.group = newValue }
    }
    public var channelLast: Bool {
        get { convolution.channelLast }
        set { convolution.channelLast = newValue }
    }

    public init(baseAxis: Int = 1, pad: [Int]? = nil, stride: [Int]? = nil, dilation: [Int]? = nil,
                group: Int = 1, channelLast: Bool = false, outputPadding: [Int]? = nil) {
        convolution = Convolution(baseAxis: baseAxis, pad: pad, stride: stride, dilation: dilation, group: group,
                                  channelLast: channelLast)
        self.outputPadding = outputPadding
    }

    public init(arguments a: inout ArgReader) throws {
        convolution = try Convolution(arguments: &a)
        outputPadding = try a.intsOrNil("output_padding")
    }

    /// Per-dimension arguments not given are reported as `[]` (meaning nnabla's defaults); `F.deconvolution`
    /// always fills them in from the weight's rank.
    public var arguments: [(String, ArgValue)] {
        convolution.arguments + [("output_padding", .ints(outputPadding ?? []))]
    }

    /// The geometry in convolution terms: the image side is this function's output, the column side its input.
    func geometry(_ inputs: [TensorType]) throws -> (ConvGeometry, [Int]) {
        let a = try convolution.resolved(inputs, Self.typeName)
        let x = inputs[0].shape, w = inputs[1].shape
        let op = try resolve(outputPadding, rank: a.spatial.count, default: 0, name: "output_padding", Self.typeName)
        guard a.channels % group == 0 else {
            throw error("group \(group) does not divide the \(a.channels) input channels of x \(x)")
        }
        guard w[0] == a.channels else {
            throw error("weight \(w) must be (inmaps, outmaps/group, *kernel) with inmaps = \(a.channels) (channels of x \(x))")
        }
        let outmaps = w[1] * group
        var out = [Int]()
        for i in 0..<a.spatial.count {
            guard op[i] >= 0 && op[i] < a.stride[i] else {
                throw error("output_padding \(op) must be >= 0 and smaller than stride \(a.stride)")
            }
            let size = try (CheckedInt(a.stride[i]) * (a.spatial[i] - 1) - 2 * CheckedInt(a.pad[i])
                            + CheckedInt(a.dilation[i]) * (a.kernel[i] - 1) + 1 + op[i])
                .get("\(Self.typeName): output size stride \(a.stride[i]) x (\(a.spatial[i]) - 1) - 2 x pad \(a.pad[i]) + dilation \(a.dilation[i]) x (kernel \(a.kernel[i]) - 1) + 1 + output_padding \(op[i])")
            guard size >= 1, a.spatial[i] >= 1 else {
                throw error("output size \(size) in spatial dimension \(i) is not positive (x \(x), weight \(w), pad \(a.pad), stride \(a.stride), dilation \(a.dilation))")
            }
            out.append(size)
        }
        return try a.result(inputs, outmaps: outmaps, out: out, transposed: true, outmapsSource: "weight.shape[1] * group")
    }

    func forwardKernel(_ f: ConvolutionForwardBuffers) -> Kernel {
        { f.engine.backwardData(col: f.x, weight: f.w, image: f.y, bias: f.bias, accumulate: false, workspace: f.workspace) }
    }

    func backwardKernel(_ g: ConvolutionBackwardBuffers) -> Kernel {
        let engine = g.engine, dy = g.dy, acc = g.accumulate, ws = g.workspace
        // dx and dW both read im2col(dy): share it unless x and W are one variable (then dx must be complete
        // before dW is added into the same buffer).
        if let dx = g.dx, let dw = g.dw, let x = g.x, let w = g.w, UnsafeMutableRawPointer(dx) != UnsafeMutableRawPointer(dw) {
            return {
                engine.forwardAndWeightGrad(image: dy, weight: w, col: dx, accumulate: acc[0], colValues: x,
                                            weightGrad: dw, accumulateWeight: acc[1], workspace: ws)
                if let db = g.db {
                    ConvolutionEngine.channelSums(dy, batch: engine.batch, channels: engine.channels,
                                                  count: engine.imageCount, into: db, accumulate: acc[2])
                }
            }
        }
        return {
            if let dx = g.dx, let w = g.w {
                engine.forward(image: dy, weight: w, col: dx, bias: nil, accumulate: acc[0], workspace: ws)
            }
            if let dw = g.dw, let x = g.x {
                engine.backwardWeight(image: dy, col: x, weightGrad: dw, accumulate: acc[1], workspace: ws)
            }
            if let db = g.db {
                ConvolutionEngine.channelSums(dy, batch: engine.batch, channels: engine.channels,
                                              count: engine.imageCount, into: db, accumulate: acc[2])
            }
        }
    }
}

// MARK: - Swift API

public extension F {
    /// nnabla's `F.affine`: `y = x.reshape(prod(x.shape[:base_axis]), -1) @ W + b`.
    static func affine(_ x: Variable, _ w: Variable, _ b: Variable? = nil, baseAxis: Int = 1) throws -> Variable {
        try apply1(Affine(baseAxis: baseAxis), b.map { [x, w, $0] } ?? [x, w])
    }

    /// nnabla's `F.convolution` (channels first). nil pad/stride/dilation are nnabla's defaults (0, 1, 1).
    static func convolution(_ x: Variable, _ w: Variable, _ b: Variable? = nil, baseAxis: Int = 1,
                            pad: [Int]? = nil, stride: [Int]? = nil, dilation: [Int]? = nil, group: Int = 1,
                            channelLast: Bool = false) throws -> Variable {
        let d = Swift.max(w.shape.count - 2, 0)
        let f = Convolution(baseAxis: baseAxis, pad: pad ?? [Int](repeating: 0, count: d),
                            stride: stride ?? [Int](repeating: 1, count: d),
                            dilation: dilation ?? [Int](repeating: 1, count: d), group: group,
                            channelLast: channelLast)
        return try apply1(f, b.map { [x, w, $0] } ?? [x, w])
    }

    /// nnabla's `F.deconvolution` (channels first). nil pad/stride/dilation/output_padding are nnabla's
    /// defaults (0, 1, 1, 0).
    static func deconvolution(_ x: Variable, _ w: Variable, _ b: Variable? = nil, baseAxis: Int = 1,
                              pad: [Int]? = nil, stride: [Int]? = nil, dilation: [Int]? = nil, group: Int = 1,
                              channelLast: Bool = false, outputPadding: [Int]? = nil) throws -> Variable {
        let d = Swift.max(w.shape.count - 2, 0)
        let f = Deconvolution(baseAxis: baseAxis, pad: pad ?? [Int](repeating: 0, count: d),
                              stride: stride ?? [Int](repeating: 1, count: d),
                              dilation: dilation ?? [Int](repeating: 1, count: d), group: group,
                              channelLast: channelLast,
                              outputPadding: outputPadding ?? [Int](repeating: 0, count: d))
        return try apply1(f, b.map { [x, w, $0] } ?? [x, w])
    }
}
