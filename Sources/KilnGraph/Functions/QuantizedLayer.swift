import KilnCore
import KilnKernels

/// A function the compiler runs in place of a chain of graph functions (`Fusion`, `Quantization`): never in `F`,
/// the registry or graph files. `stepName` is what plans call the step.
package protocol FusedFunction: Function {
    var stepName: String { get }
}

extension FusedFunction {
    /// Graph files never name a fused function.
    package init(arguments a: inout ArgReader) throws {
        throw KilnError.invalidFunction(function: Self.typeName, reason: "is made by the compiler, not by graph files")
    }
}

extension FusedConvolution: FusedFunction {}

/// A convolution or affine whose input and weight lie on 8-bit grids (outputs of nnabla's `FixedPointQuantize`
/// with n <= 8 and a power-of-two delta, or of a QuantizeLinear/DequantizeLinear pair; a weight may also be the
/// DequantizeLinear of codes with a scale per output map), run as an integer product, with the functions after it
/// as its epilogue: a test-mode BatchNormalization (convolutions), an Add2 of a same-shaped value, ReLU or ReLU6,
/// and the next quantizer. A QDQ model's residual block (product, quantizer, Add2 of another value, ReLU,
/// quantizer) is one step too: the product's value is put on its quantizer's grid (`snap`) before the sum.
///
/// Made by the `Quantization` pass for inference plans. Inputs are the product's (x, W, optional b), then the
/// BatchNormalization's parameters without its x, then the Add2's other operand. x and the residual may be
/// 8-bit codes in the arena (`input`, `residualStorage`); the output is floats, floats on the quantizer's grid, or
/// its codes (`output`). On power-of-two grids, where every sum of the float product is exact in float32 (sums of
/// at most 2^24 steps), the values are those of the separate float steps bit for bit; beyond that the integer sum
/// is the exact one. Other scales round once where the float steps round at each product and sum.
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
    /// The grid of a quantizer between the product and the residual sum, when there is one.
    let snap: QuantizedCodes?
    let activation: ConvEpilogue.Activation
    /// How x is held: codes, or floats on its grid.
    let input: QuantizedStorage
    /// The weight's quantizer's grid (codes within [-127, 127]). The weight input is either the
    /// quantizer's output (already on the grid) or, where this step absorbed the quantizer, its float input; for a
    /// weight dequantized per output map (`rowScales`), the codes themselves on a grid of step 1.
    let weight: QuantizedCodes
    /// Per output map, the product's scale (the input's step times that map's weight step), when the weight has
    /// one step per map (DequantizeLinear of codes).
    let rowScales: [Float]?
    let residualStorage: QuantizedStorage
    /// The last quantizer's grid as codes or floats, or `.floats` without one.
    let output: QuantizedStorage
    /// Scales and zero points compiled in: read after the other inputs and checked on every run.
    let compiled: CompiledConstants

    package init(product: Product, productInputs: Int, batchNormalization: BatchNormalization?, residual: Bool,
                 snap: QuantizedCodes? = nil, activation: ConvEpilogue.Activation, input: QuantizedStorage, weight: QuantizedCodes,
                 rowScales: [Float]? = nil, residualStorage: QuantizedStorage, output: QuantizedStorage,
                 compiled: CompiledConstants = CompiledConstants(names: [], values: [])) {
        self.product = product
        self.productInputs = productInputs
        self.batchNormalization = batchNormalization
        self.residual = residual
        self.snap = snap
        self.activation = activation
        self.input = input
        self.weight = weight
        self.rowScales = rowScales
        self.residualStorage = residualStorage
        self.output = output
        self.compiled = compiled
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
        if let snap { names.append(contentsOf: snap.quantizerNames) }
        if residual { names.append(Add2.typeName) }
        if activation == .relu { names.append(ReLU.typeName) }
        if activation == .relu6 { names.append(ReLU6.typeName) }
        if let g = output.grid { names.append(contentsOf: g.quantizerNames) }
        return names.joined(separator: "+")
    }

    package var arguments: [(String, ArgValue)] {
        productFunction.arguments + (batchNormalization?.arguments ?? [])
            + [("input", .string(input.description)),
               ("weight", .string(rowScales == nil ? "\(weight) max \(weight.maxCode)" : "codes max \(weight.maxCode), a step per map")),
               ("residual", .string(residual ? residualStorage.description : "none")),
               ("output", .string(output.description))]
    }

    var residualIndex: Int? {
        residual ? productInputs + (batchNormalization.map { $0.inputCount - 1 } ?? 0) : nil
    }

    /// Where the compiled constants start: after the product's, the normalisation's and the residual's inputs.
    var constantsIndex: Int { residualIndex.map { $0 + 1 } ?? productInputs + (batchNormalization.map { $0.inputCount - 1 } ?? 0) }

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
            snap: snap, residual: residualIndex.map { UnsafeRawPointer(b.inputs[$0].raw) }, residualStorage: residualStorage,
            activation: activation, output: output)
        let x = UnsafeRawPointer(b.inputs[0].raw), w = UnsafePointer(b.inputs[1].f), y = b.outputs[0].raw
        let input = input, grid = weight
        let check = try compiled.check(b, first: constantsIndex, step: stepName)
        if let rowScales {
            guard rowScales.count == k.outputs else { throw error("has \(rowScales.count) row scales for \(k.outputs) maps") }
            return {
                try check()
                table?.read()
                rowScales.withUnsafeBufferPointer {
                    k.run(input: x, inputStorage: input, weight: w, weightGrid: grid, rowScales: $0.baseAddress,
                          output: y, epilogue: epilogue, workspace: ws)
                }
            }
        }
        return {
            try check()
            table?.read()
            k.run(input: x, inputStorage: input, weight: w, weightGrid: grid, output: y, epilogue: epilogue,
                  workspace: ws)
        }
    }
}

/// A quantizer writing 8-bit codes instead of floats: nnabla's FixedPointQuantize, or a QuantizeLinear with the
/// DequantizeLinear after it. The same values in a quarter of the bytes, for a value every reader of which takes
/// codes (`Quantization`). Reads x first (a QuantizeLinear's scale and zero point are compiled into `codes`).
package struct QuantizeToCodes: FusedFunction {
    package static let typeName = "QuantizeToCodes"
    let codes: QuantizedCodes
    let quantizerArguments: [(String, ArgValue)]
    /// A QDQ pair's scales and zero points, read from input `compiledFrom` on.
    let compiled: CompiledConstants
    let compiledFrom: Int

    package init(codes: QuantizedCodes, quantizerArguments: [(String, ArgValue)],
                 compiled: CompiledConstants = CompiledConstants(names: [], values: []), compiledFrom: Int = 1) {
        self.codes = codes
        self.quantizerArguments = quantizerArguments
        self.compiled = compiled
        self.compiledFrom = compiledFrom
    }

    package var stepName: String { codes.quantizerNames.joined(separator: "+") }
    package var arguments: [(String, ArgValue)] { quantizerArguments + [("output", .string(codes.description))] }
    package var isDifferentiable: Bool { false }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        guard let x = inputs.first else { throw error("has no input") }
        return [x]
    }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x = UnsafePointer(b.inputs[0].f), y = b.outputs[0].raw, count = b.inputs[0].count
        let codes = codes
        let check = try compiled.check(b, first: compiledFrom, step: stepName)
        return {
            try check()
            QuantizedProduct.quantize(x, count: count, grid: codes, into: y)
        }
    }
}

/// nnabla's Add2 of two values on grids (a ReLU after it, optionally) and the quantizer reading the sum, on
/// codes: each operand read as codes or floats, the sum computed in float as the separate steps compute it and put
/// on the quantizer's grid, so the values are the float plan's bit for bit (`Quantization`). Inputs: the two
/// operands, then the constants compiled in.
package struct QuantizedAdd2: FusedFunction {
    package static let typeName = "QuantizedAdd2"
    let left: QuantizedStorage
    let right: QuantizedStorage
    let relu: Bool
    let output: QuantizedStorage
    let compiled: CompiledConstants

    package init(left: QuantizedStorage, right: QuantizedStorage, relu: Bool, output: QuantizedStorage, compiled: CompiledConstants) {
        self.left = left
        self.right = right
        self.relu = relu
        self.output = output
        self.compiled = compiled
    }

    package var stepName: String {
        ([Add2.typeName] + (relu ? [ReLU.typeName] : []) + (output.grid?.quantizerNames ?? [])).joined(separator: "+")
    }
    package var arguments: [(String, ArgValue)] {
        [("x0", .string(left.description)), ("x1", .string(right.description)), ("output", .string(output.description))]
    }
    package var isDifferentiable: Bool { false }

    /// The sum may take over the first operand's memory when both are held alike (each element is read before
    /// the same element is written).
    package var forwardInPlaceInput: Int? {
        switch (left, output) {
        case (.codes(let l), .codes(let o)) where l.signed == o.signed: return 0
        case (.floats, .floatsOnGrid), (.floatsOnGrid, .floatsOnGrid): return 0
        default: return nil
        }
    }

    package func outputTypes(_ inputs: [TensorType]) throws -> [TensorType] {
        guard inputs.count >= 2, inputs[0].shape == inputs[1].shape else { throw error("needs two operands of one shape") }
        return [inputs[0]]
    }

    package func makeForward(_ b: ForwardBinding) throws -> Kernel {
        let x0 = UnsafeRawPointer(b.inputs[0].raw), x1 = UnsafeRawPointer(b.inputs[1].raw), y = b.outputs[0].raw
        let count = b.outputs[0].count, left = left, right = right, relu = relu, output = output
        let check = try compiled.check(b, first: 2, step: stepName)
        return {
            try check()
            QuantizedProduct.add(count: count, x0, left, x1, right, relu: relu, output: output, into: y)
        }
    }
}

/// Values a quantized step compiled in (QDQ scales and zero points, a weight's scales), with the names of the
/// constant leaves they came from. The step reads those leaves as its last inputs and stops the run with an error
/// when one no longer holds its compiled values: a changed scale would otherwise give silently wrong results.
package struct CompiledConstants {
    let names: [String]
    let values: [[Float]]

    package init(names: [String], values: [[Float]]) {
        self.names = names
        self.values = values
    }

    /// The check of a binding's inputs from `first` on.
    func check(_ b: ForwardBinding, first: Int, step: String) throws -> () throws -> Void {
        if values.isEmpty { return {} }
        guard b.inputs.count == first + values.count else {
            throw KilnError.invalidFunction(function: step, reason: "reads \(b.inputs.count) inputs where \(first + values.count) were compiled")
        }
        var pointers: [UnsafePointer<Float>] = []
        for (k, v) in values.enumerated() {
            let input = b.inputs[first + k]
            guard input.count == v.count else {
                throw KilnError.invalidFunction(function: step, reason: "'\(names[k])' holds \(input.count) values where \(v.count) were compiled")
            }
            pointers.append(UnsafePointer(input.f))
        }
        let values = values, names = names
        return {
            for (k, v) in values.enumerated() {
                let p = pointers[k]
                for i in v.indices where p[i] != v[i] {
                    throw KilnError.invalidData("\(step): '\(names[k])' changed since the plan was compiled, which compiled its values in (quantization scales and zero points are constants); compile the plan again")
                }
            }
        }
    }
}

extension QuantizedCodes {
    /// The graph functions that put values on this grid, for step names.
    var quantizerNames: [String] {
        if case .linear = rounding { return [QuantizeLinear.typeName, DequantizeLinear.typeName] }
        return [FixedPointQuantize.typeName]
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
