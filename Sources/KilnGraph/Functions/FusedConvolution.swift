import KilnCore
import KilnKernels

/// A convolution with the batch normalisation (fixed statistics), residual addition and ReLU or ReLU6 that
/// follow it, and then a 2-D max or average pooling with a ReLU or ReLU6 after it, as one step.
///
/// Not one of nnabla's functions: only the `Fusion` pass makes it, for inference plans, so it is absent from
/// `F`, the registry and graph files. Inputs are the convolution's (x, W, optional b), then the
/// BatchNormalization's parameters without its x (beta, gamma as present, mean, variance), then the other
/// operand of the Add2. Output values are bit-identical to running the functions one after another; the
/// intermediate tensors are never written, which saves several passes over memory per layer. With a pooling,
/// each output plane is pooled while it is still in cache, and the full-sized output never exists.
package struct FusedConvolution: Function {
    package static let typeName = "FusedConvolution"
    let convolution: Convolution
    /// Number of the convolution's inputs (2 without bias, 3 with).
    let convolutionInputs: Int
    package let batchNormalization: BatchNormalization?
    /// Whether an Add2 with a tensor shaped like the output follows (the residual is the last input).
    package let residual: Bool
    package let activation: ConvEpilogue.Activation
    /// A 1x1, stride 1, unpadded convolution writes its product straight into the output, so the output must
    /// not share the residual's memory.
    let pointwise: Bool
    /// The pooling of each output plane (only where the direct kernel runs the product), and the activation after it.
    package let pooling: FusedPooling?
    package let pooledActivation: ConvEpilogue.Activation
    /// Set by the `Layout` pass: x, the residual and the output are stored in padded planes (`PaddedPlanes`);
    /// nil is nnabla's dense layout. Only where the direct kernel runs the product, and x only at stride 1.
    package var inputPlanes: PaddedPlanes? = nil
    package var residualPlanes: PaddedPlanes? = nil
    package var outputPlanes: PaddedPlanes? = nil

    package init(convolution: Convolution, convolutionInputs: Int, batchNormalization: BatchNormalization?, residual: Bool,
         activation: ConvEpilogue.Activation, pointwise: Bool, pooling: FusedPooling? = nil,
         pooledActivation: ConvEpilogue.Activation = .none) {
        self.convolution = convolution
        self.convolutionInputs = convolutionInputs
        self.batchNormalization = batchNormalization
        self.residual = residual
        self.activation = activation
        self.pointwise = pointwise
        self.pooling = pooling
        self.pooledActivation = pooling == nil ? .none : pooledActivation
    }

    /// The same chain without its pooling and what follows it.
    package var withoutPooling: FusedConvolution {
        FusedConvolution(convolution: convolution, convolutionInputs: convolutionInputs, batchNormalization: batchNormalization,
                         residual: residual, activation: activation, pointwise: pointwise)
    }

    /// What the step is called in plans: the fused functions joined by "+".
    package var stepName: String {
        (["Convolution"] + (batchNormalization == nil ? [] : ["BatchNormalization"]) + (residual ? ["Add2"] : [])
            + (Self.name(of: activation).map { [$0] } ?? []) + (pooling.map { [$0.typeName] } ?? [])
            + (Self.name(of: pooledActivation).map { [$0] } ?? [])).joined(separator: "+")
    }

    /// An activation's function name, or nil.
    static func name(of activation: ConvEpilogue.Activation) -> String? {
        switch activation {
        case .none: return nil
        case .relu: return ReLU.typeName
        case .relu6: return ReLU6.typeName
        }
    }

    package var arguments: [(String, ArgValue)] {
        var a = convolution.arguments + (batchNormalization?.arguments ?? [])
            + [("residual", .bool(residual)), ("activation", .string(Self.name(of: activation) ?? "none"))]
        if let pooling {
            a += [("pooling", .string(pooling.typeName))] + pooling.function.arguments.map { ("pooling_" + $0.0, $0.1) }
                + [("pooled_activation", .string(Self.name(of: pooledActivation) ?? "none"))]
        }
        return a
    }

    /// Position of the residual among the inputs.
    package var residualIndex: Int? {
        residual ? convolutionInputs + (batchNormalization.map { $0.inputCount - 1 } ?? 0) : nil
    }

    /// The output may take over the residual's memory: each output element is written right after the
    /// residual element at the same place is read (except on the pointwise path, see `pointwise`).
    /// With padded planes, only where the residual and the output are laid out alike.
    package var forwardInPlaceInput: Int? {
        pointwise || pooling != nil || residualPlanes != outputPlanes ? nil : residualIndex
    }

    /// The convolution's geometry for these input types.
    package func geometry(_ inputs: [TensorType]) throws -> ConvGeometry {
        try convolution.geometry(Array(inputs.prefix(convolutionInputs))).0
    }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        let product = try convolution.outputTypes(Array(inputs.prefix(convolutionInputs)))
        return try pooling.map { try $0.function.outputTypes(product) } ?? product
    }

    package var isDifferentiable: Bool { false }

    package func forwardWorkspace(_ b: TypeBinding) -> Int {
        if inputPlanes != nil, let g = try? geometry(b.inputs) { return ConvolutionEngine.paddedInputWorkspaceBytes(g) }
        return convolution.forwardWorkspace(TypeBinding(inputs: Array(b.inputs.prefix(convolutionInputs)), outputs: b.outputs))
    }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let g = try geometry(b.inputs.map { $0.type })
        let engine = ConvolutionEngine(g)
        if inputPlanes != nil || outputPlanes != nil || residualPlanes != nil {
            guard ConvolutionEngine.runsDirectForward(g), pooling == nil else {
                throw error("padded planes need the direct convolution kernel and no pooling")
            }
            if let planes = inputPlanes, planes != ConvolutionEngine.paddedInputPlanes(g) {
                throw error("x's \(planes) are not those the convolution reads")
            }
        }
        let x = b.inputs[0].f, w = b.inputs[1].f, y = b.outputs[0].f
        let bias = convolutionInputs == 3 ? b.inputs[2].f : nil
        let ws = b.workspace?.assumingMemoryBound(to: Float.self)
        if engine.plan != nil && ws == nil { throw error("missing workspace") }
        let table = NormalizationTable(batchNormalization, maps: engine.outmaps, inputs: b.inputs, first: convolutionInputs)
        let maps = engine.outmaps
        let residualValues = residualIndex.map { UnsafePointer(b.inputs[$0].f) }
        var pool: PlanePooling?
        if let pooling {
            guard engine.poolsInEpilogue, ws != nil else { throw error("pooling needs the direct convolution kernel") }
            let product = try convolution.outputTypes(b.inputs.prefix(convolutionInputs).map { $0.type })[0]
            pool = pooling.plane(product, b.outputs[0].type)
        }
        let epilogue = ConvEpilogue(mean: table.p, scale: table.p + maps, shift: table.p + 2 * maps,
                                    residual: residualValues, activation: activation, pool: pool,
                                    pooledActivation: pooledActivation, residualPlanes: residualPlanes)
        let paddedInput = inputPlanes != nil, outputPlanes = outputPlanes
        return {
            table.read()
            engine.forward(image: x, weight: w, col: y, bias: bias, accumulate: false, workspace: ws, epilogue: epilogue,
                           paddedInput: paddedInput, outputPlanes: outputPlanes)
        }
    }
}

/// The pooling a fused convolution applies to each of its output planes.
package enum FusedPooling {
    case max(MaxPooling)
    case average(AveragePooling)

    /// The pooling when a fused convolution's epilogue can run it: 2-D windows over a channels-first 4-D value.
    package init?(_ f: any Function, input: TensorType) {
        switch f {
        case let m as MaxPooling where !m.spec.channelLast && m.spec.kernel.count == 2 && input.rank == 4: self = .max(m)
        case let a as AveragePooling where !a.spec.channelLast && a.spec.kernel.count == 2 && input.rank == 4: self = .average(a)
        default: return nil
        }
    }

    var function: any Function {
        switch self {
        case .max(let m): return m
        case .average(let a): return a
        }
    }

    var typeName: String { function.typeName }

    /// The kernels' per-plane pooling from the convolution's output type to the pooled type.
    func plane(_ input: TensorType, _ output: TensorType) -> PlanePooling {
        switch self {
        case .max(let m): return PlanePooling(windows: m.spec.windows(input, output, averageDivisor: nil), average: false)
        case .average(let a):
            return PlanePooling(windows: a.spec.windows(input, output, averageDivisor: a.includingPad), average: true)
        }
    }
}

/// A fused step's per-map batch normalisation with fixed statistics as `mean`, `scale` and `shift` rows
/// (`(v - mean) * scale + shift`, as the BatchNormalization kernel computes it), read from the parameters on
/// every run (a user may change them). Without a normalisation the rows are 0, 1 and 0: `(v - 0) * 1 + 0` is v.
final class NormalizationTable {
    let p: UnsafeMutablePointer<Float>
    let read: () -> Void

    /// `bn`'s parameters are `inputs[first...]` without its x (beta, gamma as present, mean, variance).
    init(_ bn: BatchNormalization?, maps: Int, inputs: [Tensor], first: Int) {
        let table = UnsafeMutablePointer<Float>.allocate(capacity: max(3 * maps, 1))
        table.initialize(repeating: 0, count: max(3 * maps, 1))
        p = table
        guard let bn else {
            for m in 0..<maps { table[maps + m] = 1 }
            read = {}
            return
        }
        let params = inputs[first..<(first + bn.inputCount - 1)].map { $0.f }
        let beta = bn.betaIndex.map { params[$0 - 1] }, gamma = bn.gammaIndex.map { params[$0 - 1] }
        let mean = params[bn.meanIndex - 1], variance = params[bn.varianceIndex - 1], eps = bn.eps
        read = {
            for m in 0..<maps {
                table[m] = mean[m]
                table[maps + m] = BatchNormKernels.testScale(gamma: gamma?[m], variance: variance[m], eps: eps)
                table[2 * maps + m] = beta?[m] ?? 0
            }
        }
    }

    deinit { p.deallocate() }
}
