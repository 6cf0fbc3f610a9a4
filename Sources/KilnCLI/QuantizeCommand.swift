import ArgumentParser
import Foundation
import Kiln

/// `kiln quantize`: post-training quantization into nnabla's fixed-point format (`FixedPointCalibration`),
/// written as a graph file whose quantized layers plans run on integer kernels.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a classifier to fixed-point (power-of-two steps) from calibration data; its convolutions and affines then run on 8-bit integer kernels.")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a model file (.json, .onnx, .nnp) whose first output scores the classes.") var model: String
    @OptionGroup var params: ParametersOption
    @Option(help: "Calibration images: fashion-mnist, random (uniform over 0...255, for benchmarks), or any dataset `kiln train` reads (its training split).") var dataset: String = "fashion-mnist"
    @Option(parsing: .unconditional, help: "Bits of every quantizer, 2 to 8.") var bits: Int = 8
    @Option(parsing: .unconditional, help: "Calibration batches.") var batches: Int = 10
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per batch of a zoo model, and the batch size of the graph written (default 100; a model file's own).") var batchSize: Int?
    @Option(name: .shortAndLong, help: "Where to write the quantized graph (.json, kiln-graph/1, weights included).") var output: String
    @Option(parsing: .unconditional, help: "Seed of a zoo model's initial weights (without --params) and of random images.") var seed: UInt32 = 313
    @Option(name: .customLong("data-dir"), help: "Directory with the IDX files.") var dataDir: String = FashionMNIST.defaultDirectory
    @Flag(name: .customLong("allow-non-finite"), help: "Accept weights holding NaN or infinity (refused by default).") var allowNonFinite = false
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.model(model, files: true)
        guard (2...8).contains(bits) else { throw ValidationError("--bits must be 2 to 8 (integer kernels take 8-bit codes at most), got \(bits)") }
        try Check.positive(batches, "--batches")
        if let batchSize { try Check.positive(batchSize, "--batch-size") }
        guard output.lowercased().hasSuffix(".json") else { throw ValidationError("-o must end in .json (a kiln-graph/1 file), got '\(output)'") }
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            Parameters.clear()
            let m = try ClassifierModel.load(model, params: params.path, batchSize: batchSize, seed: seed, allowNonFinite: allowNonFinite)
            let batch = m.input.shape[0], shape = m.sampleShape, sample = shape.reduce(1, *)
            let feed: (Int) throws -> Void
            if dataset == "random" {
                let rng = NumpyRandom(seed: seed)
                feed = { _ in try m.input.setData(rng.uniform(0, 255, count: batch * sample)) }
            } else {
                let set = try ImageDataset.load(dataset, train: true, directory: dataDir)
                let adapter = try ImageAdapter(from: set.sampleShape, to: shape)
                var data = [Float](repeating: 0, count: batch * sample), image: [Float] = []
                feed = { b in
                    for j in 0..<batch {
                        // Batch b's images follow on from batch b - 1's, round the set (no product that can overflow).
                        let i = ((b % set.count) * (batch % set.count) + j % set.count) % set.count
                        adapter.adapt(set.images[(i * set.sampleSize)..<((i + 1) * set.sampleSize)], into: &image)
                        data.replaceSubrange((j * sample)..<((j + 1) * sample), with: image)
                    }
                    try m.input.setData(data)
                }
            }
            let float = try m.integerLayers()
            print("calibrating \(model) on \(batches) batch(es) of \(batch) \(dataset == "random" ? "random" : dataset) image(s), \(bits) bits")
            let result = try FixedPointCalibration(bits: bits).quantize([m.scores], batches: batches, feed: feed) { b in
                if b == batches || b % max(1, batches / 10) == 0 { print("  batch \(b)/\(batches)") }
            }
            print("\(padded("input of", 24)) \(padded("tensor", 20)) \(padded("min", 11)) \(padded("max", 11)) codes  step")
            for r in result.ranges {
                print("\(padded(r.layer, 24)) \(padded(r.name, 20)) \(padded(String(format: "%.4g", r.min), 11)) \(padded(String(format: "%.4g", r.max), 11)) \(r.signed ? "s" : "u")\(bits)    \(r.step.map { "2^\(Int(log2($0)))" } ?? "none")")
            }
            for n in result.notes { print("note: \(n)") }
            let q = ClassifierModel(input: m.input, scores: result.outputs[0])
            q.scores.name = m.scores.name.isEmpty ? "y" : m.scores.name
            let layers = try q.integerLayers()
            print("integer kernels: \(layers.integer) of \(layers.layers) convolution/affine layers (path \(KernelPaths.integerPath)); arena \(formatBytes(layers.plan.arenaBytes)) (float plan \(formatBytes(float.plan.arenaBytes)))")
            for n in layers.plan.notes { print("note: \(n)") }
            let json = GraphFile.save([q.scores], withoutData: [m.input])
            try AtomicFile.write(to: output) { emit in
                try json.serialize(emit)
                try [UInt8(ascii: "\n")].withUnsafeBytes { try emit($0) }
            }
            print("wrote \(output)")
        }
    }
}

/// `s` padded with spaces to `n` characters, for tables.
func padded(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
