import KilnCore
import KilnKernels

/// A function the compiler runs in place of a chain of graph functions (`Fusion`, `Quantization`): never in `F`,
/// the registry or graph files. `stepName` is what plans call the step.
package protocol FusedFunction: Function {
    var stepName: String { get }
}

extension FusedConvolution: FusedFunction {}

/// A convolution or affine whose input and weight lie on fixed-point grids (outputs of nnabla's
/// `FixedPointQuantize` with n <= 8 and a power-of-two delta), run as an integer product, with the functions
/// after it as its epilogue: a test-mode BatchNormalization (convolutions), an Add2 of a same-shaped value, ReLU
/// or ReLU6, and the next FixedPointQuantize.
///
/// Made by the `Quantization` pass for inference plans. Inputs are the product's (x, W, optional b), then the
/// BatchNormalization's parameters without its x, then the Add2's other operand. x and the residual may be
/// 8-bit codes in the arena (`input`, `residualStorage`); the output is floats, floats on the quantizer's grid, or
/// its codes (`output`). Where every sum of the float product is exact in float32 (sums of at most 2^24 steps),
/// the values are those of the separate float steps bit for bit; beyond that the integer sum is the exact one.
package struct QuantizedLayer: FusedFunction {
    package static let typeName = "QuantizedLayer"

    package enum Product {
        case convolution(Convolution)
        case affine(Affine)
    }

    let product: Product
    /// Number of the product's inputs (2 without bias, 3 with).
    let productInputs: Int
    let batchNormalization: BatchNormalization?
    let residual: Bool
    let activation: ConvEpilogue.Activation
    /// How x is held: codes, or floats on its grid.
    let input: QuantizedStorage
    /// The weight's quantizer: its grid and largest code magnitude (127 at most). The weight input is either the
    /// quantizer's output (already on the grid) or, where this step absorbed the quantizer, its float input.
    let weight: QuantizedCodes
    let weightMaxCode: Int
    let residualStorage: QuantizedStorage
    /// The last quantizer's grid as codes or floats, or `.floats` without one.
    let output: QuantizedStorage

    package init(arguments a: inout ArgReader) throws {
        throw KilnError.invalidFunction(function: Self.typeName, reason: "is made by the compiler, not by graph files")
    }

    package init(product: Product, productInputs: Int, batchNormalization: BatchNormalization?, residual: Bool,
                 activation: ConvEpilogue.Activation, input: QuantizedStorage, weight: QuantizedCodes, weightMaxCode: Int,
                 residualStorage: QuantizedStorage, output: QuantizedStorage) {
        self.product = product
        self.productInputs = productInputs
        self.batchNormalization = batchNormalization
        self.residual = residual
        self.activation = activation
        self.input = input
        self.weight = weight
        self.weightMaxCode = weightMaxCode
        self.residualStorage = residualStorage
        self.output = output
    }

    var productFunction: any Function {
        switch product {
        case .convolution(let c): return c
        case .affine(let a): return a
        }
    }

    /// "QuantizedConvolution+BatchNormalization+ReLU+FixedPointQuantize": the integer product and what it absorbed.
    package var stepName: String {
        var names = ["Quantized" + type(of: productFunction).typeName]
        if batchNormalization != nil { names.append(BatchNormalization.typeName) }
        if residual { names.append(Add2.typeName) }
        if activation == .relu { names.append(ReLU.typeName) }
        if activation == .relu6 { names.append(ReLU6.typeName) }
        if output.grid != nil { names.append(FixedPointQuantize.typeName) }
        return names.joined(separator: "+")
    }

    package var arguments: [(String, ArgValue)] {
        productFunction.arguments + (batchNormalization?.arguments ?? [])
            + [("input", .string(input.description)), ("weight", .string("\(weight) max \(weightMaxCode)")),
               ("residual", .string(residual ? residualStorage.description : "none")),
               ("output", .string(output.description))]
    }

    var residualIndex: Int? {
        residual ? productInputs + (batchNormalization.map { $0.inputCount - 1 } ?? 0) : nil
    }

    /// The output may take over the residual's memory when both are held alike (codes of one signedness, or
    /// floats): the epilogue reads each residual element just before it writes the output element at the same
    /// place, and the product itself goes to the workspace.
    package var forwardInPlaceInput: Int? {
        switch (residualStorage, output) {
        case (.codes(let r), .codes(let o)) where r.signed == o.signed: return residualIndex
        case (.floats, .floats), (.floats, .floatsOnGrid): return residualIndex
        default: return nil
        }
    }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        try productFunction.outputTypes(Array(inputs.prefix(productInputs)))
    }

    package var isDifferentiable: Bool { false }

    func kernel(_ types: [TensorType]) throws -> QuantizedProduct {
        switch product {
        case .convolution(let c):
            return try QuantizedProduct(convolution: c.geometry(Array(types.prefix(productInputs))).0)
        case .affine(let a):
            let x = types[0].shape, w = types[1].shape
            let base = a.baseAxis < 0 ? a.baseAxis + x.count : a.baseAxis
            return QuantizedProduct(affineBatch: x[..<base].reduce(1, *), inputs: x[base...].reduce(1, *),
                                    outputs: w.dropFirst().reduce(1, *))
        }
    }

    package func forwardWorkspace(_ b: TypeBinding) -> Int { (try? kernel(b.inputs).workspaceBytes) ?? 0 }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let k = try kernel(b.inputs.map { $0.type })
        guard let ws = b.workspace else { throw error("missing workspace") }
        let table = batchNormalization.map { NormalizationTable($0, maps: k.outputs, inputs: b.inputs, first: productInputs) }
        let epilogue = QuantizedProduct.Epilogue(
            bias: productInputs == 3 ? UnsafePointer(b.inputs[2].f) : nil, mean: table.map { UnsafePointer($0.p) },
            scale: table.map { UnsafePointer($0.p + k.outputs) }, shift: table.map { UnsafePointer($0.p + 2 * k.outputs) },
            residual: residualIndex.map { UnsafeRawPointer(b.inputs[$0].raw) }, residualStorage: residualStorage,
            activation: activation, output: output)
        let x = UnsafeRawPointer(b.inputs[0].raw), w = UnsafePointer(b.inputs[1].f), y = b.outputs[0].raw
        let input = input, grid = weight, maxCode = weightMaxCode
        return {
            table?.read()
            k.run(input: x, inputStorage: input, weight: w, weightGrid: grid, weightMaxCode: maxCode, output: y, epilogue: epilogue,
                  workspace: ws)
        }
    }
}

/// nnabla's FixedPointQuantize writing 8-bit codes instead of floats: the same values in a quarter of the bytes,
/// for a value every reader of which takes codes (`Quantization`).
package struct QuantizeToCodes: FusedFunction {
    package static let typeName = "QuantizeToCodes"
    let quantizer: FixedPointQuantize
    let codes: QuantizedCodes

    package init(arguments a: inout ArgReader) throws {
        throw KilnError.invalidFunction(function: Self.typeName, reason: "is made by the compiler, not by graph files")
    }

    package init(quantizer: FixedPointQuantize, codes: QuantizedCodes) {
        self.quantizer = quantizer
        self.codes = codes
    }

    package var stepName: String { FixedPointQuantize.typeName }
    package var arguments: [(String, ArgValue)] { quantizer.arguments + [("output", .string(codes.description))] }
    package var isDifferentiable: Bool { false }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] { try quantizer.outputTypes(inputs) }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = UnsafePointer(b.inputs[0].f), y = b.outputs[0].raw, count = b.inputs[0].count
        let step = codes.step, signed = codes.signed
        let (lo, hi) = signed ? (-127, 127) : (0, 255)
        return { QuantizedProduct.quantize(x, count: count, step: step, minCode: lo, maxCode: hi, signed: signed, into: y) }
    }
}

/// nnabla's MaxPooling on 8-bit codes: the codes of a grid order as the values they stand for, so pooling codes
/// gives the codes of the pooled values (`Quantization`). Writes codes, or the floats they stand for when a
/// reader needs floats (through a workspace holding the pooled codes).
package struct QuantizedMaxPooling: FusedFunction {
    package static let typeName = "QuantizedMaxPooling"
    let pooling: MaxPooling
    let codes: QuantizedCodes
    /// Codes out (true), or floats.
    let codesOut: Bool

    package init(arguments a: inout ArgReader) throws {
        throw KilnError.invalidFunction(function: Self.typeName, reason: "is made by the compiler, not by graph files")
    }

    package init(pooling: MaxPooling, codes: QuantizedCodes, codesOut: Bool) {
        self.pooling = pooling
        self.codes = codes
        self.codesOut = codesOut
    }

    package var stepName: String { MaxPooling.typeName }
    package var arguments: [(String, ArgValue)] {
        pooling.arguments + [("input", .string(codes.description)), ("output", .string(codesOut ? codes.description : "f32"))]
    }
    package var isDifferentiable: Bool { false }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] { try pooling.outputTypes(inputs) }

    package func forwardWorkspace(_ b: TypeBinding) -> Int { codesOut ? 0 : b.outputs[0].count }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let g = pooling.spec.windows(b.inputs[0].type, b.outputs[0].type, averageDivisor: nil)
        let x = UnsafeRawPointer(b.inputs[0].raw), y = b.outputs[0].raw, count = b.outputs[0].count
        let codes = codes
        if codesOut { return { PoolingKernels.maxForward(g, codes: x, signed: codes.signed, into: y) } }
        guard let ws = b.workspace else { throw error("missing workspace") }
        let floats = b.outputs[0].f
        return {
            PoolingKernels.maxForward(g, codes: x, signed: codes.signed, into: ws)
            QuantizedProduct.dequantize(ws, codes, count: count, into: floats)
        }
    }
}
