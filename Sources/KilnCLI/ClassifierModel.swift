import Kiln

/// An image classifier for `kiln quantize` and `kiln evaluate`: a zoo model's inference graph (BatchNormalization
/// on its running statistics) at the batch size asked for, or a model file's graph at its own batch size. Its
/// images go to the first input of shape (N, C, H, W) or (N, H, W), its class scores come from the first output.
struct ClassifierModel {
    var input: Variable
    var scores: Variable

    static func load(_ model: String, params: String?, batchSize: Int?, seed: UInt32, allowNonFinite: Bool) throws -> ClassifierModel {
        if let zoo = Zoo(rawValue: model) {
            let network = try zoo.network(rng: NumpyRandom(seed: seed))
            let m = try zoo.build(batchSize: batchSize ?? 100, training: false, network: network)
            if let params {
                try ParameterFile.load(into: network.getParameters(gradOnly: false), from: params, requireAll: true,
                                       allowNonFinite: allowNonFinite)
            }
            m.prediction.name = "y"
            return ClassifierModel(input: m.input, scores: m.prediction)
        }
        let g = try ModelFile.load(path: model, parameters: params, allowNonFinite: allowNonFinite).graph
        guard let input = g.inputsWithoutData.compactMap({ g.variables[$0] }).first(where: { $0.ndim == 4 || $0.ndim == 3 }) else {
            throw KilnError.invalidData("\(model): no input of shape (N, C, H, W) or (N, H, W) to feed images to")
        }
        guard let scores = g.outputs.first, scores.ndim == 2, scores.shape[0] == input.shape[0] else {
            throw KilnError.invalidData("\(model): the first output must be class scores of shape (\(input.shape[0]), classes), got \(g.outputs.first?.shape ?? [])")
        }
        if let batchSize, batchSize != input.shape[0] {
            throw KilnError.invalidData("\(model) is built for batches of \(input.shape[0]): drop --batch-size or give \(input.shape[0]) (a model file's shapes are fixed)")
        }
        return ClassifierModel(input: input, scores: scores)
    }

    /// One sample's (C, H, W).
    var sampleShape: [Int] { input.ndim == 4 ? Array(input.shape.dropFirst()) : [1] + input.shape.dropFirst() }

    /// The inference plan's integer layers: how many of the convolutions and affines run on integer kernels.
    func integerLayers() throws -> (integer: Int, layers: Int, plan: Plan) {
        let plan = try Compiler.plan([scores], .inference)
        let integer = plan.steps.filter { $0.function.hasPrefix("Quantized") }.count
        let float = plan.steps.filter { s in ["Convolution", "Affine"].contains { s.function.hasPrefix($0) } }.count
        return (integer, integer + float, plan)
    }
}
