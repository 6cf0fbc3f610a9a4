import Kiln

/// What `kiln train` trains: a zoo model (built twice on one network: the training graph at the batch size
/// asked for, an evaluation graph at 100 images, or fewer for a smaller test set) or a graph file (its first output taken as class scores,
/// trained and evaluated at the batch size the file declares).
struct TrainableModel {
    var name: String
    /// Training graph: image input, label, mean softmax cross-entropy.
    var input: Variable
    var label: Variable
    var loss: Variable
    /// Evaluation graph: image input, label, mean top-1 error.
    var evalInput: Variable
    var evalLabel: Variable
    var error: Variable
    /// What the solver updates, and what checkpoints save (with fixed parameters such as BN statistics).
    var trainable: ParameterDictionary
    var saved: ParameterDictionary
    /// One sample's (C, H, W), and the number of classes the model scores.
    var sampleShape: [Int]
    var classes: Int
    var batchSize: Int
    var evalBatchSize: Int

    static func zoo(_ zoo: Zoo, batchSize: Int, evalBatchSize: Int) throws -> TrainableModel {
        let network = try zoo.network()
        let t = try zoo.build(batchSize: batchSize, training: true, network: network)
        let v = try zoo.build(batchSize: evalBatchSize, training: false, network: network)
        return TrainableModel(
            name: zoo.rawValue, input: t.input, label: t.label, loss: t.loss, evalInput: v.input, evalLabel: v.label,
            error: try F.mean(F.topNError(v.prediction, v.label)),
            trainable: network.getParameters(gradOnly: true), saved: network.getParameters(gradOnly: false),
            sampleShape: zoo.inputShape, classes: t.prediction.shape.last ?? 0, batchSize: batchSize, evalBatchSize: evalBatchSize)
    }

    /// A graph file: its image input is the first declared input of rank 4 (N, C, H, W) or 3 (N, H, W, grey),
    /// its class scores the first output, of shape (N, classes).
    static func graphFile(_ path: String, batchSize: Int?, evalBatchSize: Int, allowNonFinite: Bool) throws -> TrainableModel {
        switch ModelFile.format(of: path) {
        case .onnx: return try onnx(path, batchSize: batchSize, evalBatchSize: evalBatchSize, allowNonFinite: allowNonFinite)
        case .nnp: return try nnp(path, batchSize: batchSize, evalBatchSize: evalBatchSize, allowNonFinite: allowNonFinite)
        case .graph: break
        }
        let g = try ModelFile.load(path: path, allowNonFinite: allowNonFinite).graph
        guard let input = g.leaves.first(where: { $0.isInput && ($0.ndim == 4 || $0.ndim == 3) }) else {
            throw KilnError.invalidData("\(path): no input of shape (N, C, H, W) or (N, H, W) to feed images to")
        }
        guard let scores = g.outputs.first, scores.ndim == 2, scores.shape[0] == input.shape[0] else {
            throw KilnError.invalidData("\(path): the first output must be class scores of shape (\(input.shape[0]), classes), got \(g.outputs.first?.shape ?? [])")
        }
        let n = input.shape[0]
        if let batchSize, batchSize != n {
            throw KilnError.invalidData("\(path) is built for batches of \(n): drop --batch-size or give \(n) (a graph file's shapes are fixed)")
        }
        let label = try Variable(shape: [n, 1], dtype: .int32, name: "label")
        let loss = try F.mean(F.softmaxCrossEntropy(scores, label))
        let error = try F.mean(F.topNError(scores, label))
        let named = ParameterDictionary(g.leaves.enumerated().filter { !$0.element.isInput && ($0.element.needGrad || $0.element.isParameter) }
            .map { (name: $0.element.name.isEmpty ? "leaf\($0.offset)" : $0.element.name, variable: $0.element) })
        let trainable = ParameterDictionary(named.filter { $0.variable.needGrad && $0.variable.dtype == .float32 })
        guard !trainable.isEmpty else { throw KilnError.invalidData("\(path): no parameter needs a gradient: nothing to train") }
        let shape = input.ndim == 4 ? Array(input.shape.dropFirst()) : [1] + input.shape.dropFirst()
        return TrainableModel(name: path, input: input, label: label, loss: loss, evalInput: input, evalLabel: label,
                              error: error, trainable: trainable, saved: named, sampleShape: shape,
                              classes: scores.shape[1], batchSize: n, evalBatchSize: n)
    }

    /// An nnabla `.nnp` model, read twice on one set of weights: its network for training (BatchNormalization
    /// on batch statistics) at the batch size asked for (else the file's), and as it is for evaluation. Its
    /// image input is the first input of rank 3 or 4, its class scores its first output.
    static func nnp(_ path: String, batchSize: Int?, evalBatchSize: Int, allowNonFinite: Bool) throws -> TrainableModel {
        let t = try NNPFile.load(path: path, batchSize: batchSize, training: true)
        if !allowNonFinite {
            for (name, v) in t.parameters {
                if let m = ParameterFile.nonFiniteMessage(name, v.data) { throw KilnError.invalidGraphFile("\(path): \(m)") }
            }
        }
        let e = try NNPFile.load(path: path, batchSize: evalBatchSize, parameters: t.parameters)
        func images(_ g: GraphFile) throws -> (Variable, Variable) {
            guard let input = g.inputsWithoutData.compactMap({ g.variables[$0] }).first(where: { $0.ndim == 4 || $0.ndim == 3 }),
                  let scores = g.outputs.first, scores.ndim == 2, scores.shape[0] == input.shape[0] else {
                throw KilnError.invalidData("\(path): needs an input of shape (N, C, H, W) or (N, H, W) and class scores (N, classes) as first output")
            }
            return (input, scores)
        }
        let (input, scores) = try images(t.graph), (evalInput, evalScores) = try images(e.graph)
        let label = try Variable(shape: [input.shape[0], 1], dtype: .int32, name: "label")
        let evalLabel = try Variable(shape: [evalInput.shape[0], 1], dtype: .int32, name: "label")
        let trainable = ParameterDictionary(t.parameters.filter { $0.variable.needGrad && $0.variable.dtype == .float32 })
        guard !trainable.isEmpty else { throw KilnError.invalidData("\(path): no parameter needs a gradient: nothing to train") }
        let shape = input.ndim == 4 ? Array(input.shape.dropFirst()) : [1] + input.shape.dropFirst()
        return TrainableModel(name: path, input: input, label: label, loss: try F.mean(F.softmaxCrossEntropy(scores, label)),
                              evalInput: evalInput, evalLabel: evalLabel, error: try F.mean(F.topNError(evalScores, evalLabel)),
                              trainable: trainable, saved: t.parameters, sampleShape: shape, classes: scores.shape[1],
                              batchSize: input.shape[0], evalBatchSize: evalInput.shape[0])
    }

    /// An ONNX model, imported twice on one set of weights: a training graph (batch statistics, Dropout) at
    /// the batch size asked for when the model's batch dimension is symbolic, and an inference graph for
    /// evaluation. Its image input is its first input, its class scores its first output.
    static func onnx(_ path: String, batchSize: Int?, evalBatchSize: Int, allowNonFinite: Bool) throws -> TrainableModel {
        let model = try ONNXModel.load(path: path)
        guard let first = model.inputs.first, first.shape.count == 4 || first.shape.count == 3 else {
            throw KilnError.invalidData("\(path): the first input must be images, (N, C, H, W) or (N, H, W)")
        }
        let fixed = first.shape[0]
        if let fixed, let batchSize, batchSize != fixed {
            throw KilnError.invalidData("\(path) is built for batches of \(fixed): drop --batch-size or give \(fixed)")
        }
        func load(_ training: Bool, _ batch: Int, _ shared: ParameterDictionary?) throws -> ONNXImporter.Result {
            do {
                return try ONNXImporter.importGraph(model, options: .init(training: training, batchSize: batch, parameters: shared))
            } catch KilnError.invalidGraphFile(let m) { throw KilnError.invalidGraphFile("\(path): \(m)") }
        }
        let t = try load(true, fixed ?? batchSize ?? 64, nil)
        if !allowNonFinite {
            for (name, v) in t.parameters {
                if let m = ParameterFile.nonFiniteMessage(name, v.data) { throw KilnError.invalidGraphFile("\(path): \(m)") }
            }
        }
        let e = try load(false, fixed ?? evalBatchSize, t.parameters)
        guard let input = t.graph.variables[first.name], let evalInput = e.graph.variables[first.name],
              let scores = t.graph.outputs.first, let evalScores = e.graph.outputs.first,
              scores.ndim == 2, scores.shape[0] == input.shape[0] else {
            throw KilnError.invalidData("\(path): the first output must be class scores of shape (N, classes)")
        }
        let label = try Variable(shape: [input.shape[0], 1], dtype: .int32, name: "label")
        let evalLabel = try Variable(shape: [evalInput.shape[0], 1], dtype: .int32, name: "label")
        let trainable = ParameterDictionary(t.parameters.filter { $0.variable.needGrad && $0.variable.dtype == .float32 })
        guard !trainable.isEmpty else { throw KilnError.invalidData("\(path): no parameter needs a gradient: nothing to train") }
        let shape = input.ndim == 4 ? Array(input.shape.dropFirst()) : [1] + input.shape.dropFirst()
        return TrainableModel(name: path, input: input, label: label, loss: try F.mean(F.softmaxCrossEntropy(scores, label)),
                              evalInput: evalInput, evalLabel: evalLabel, error: try F.mean(F.topNError(evalScores, evalLabel)),
                              trainable: trainable, saved: t.parameters, sampleShape: shape, classes: scores.shape[1],
                              batchSize: input.shape[0], evalBatchSize: evalInput.shape[0])
    }
}
