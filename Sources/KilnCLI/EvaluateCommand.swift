import ArgumentParser
import Foundation
import Kiln

/// `kiln evaluate`: test accuracy of a classifier, float or quantized (`ClassifierAccuracy`).
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate", abstract: "Print a classifier's top-1 accuracy on a dataset's test split (float or quantized models alike).")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a model file (.json, .onnx, .nnp) whose first output scores the classes.") var model: String
    @OptionGroup var params: ParametersOption
    @Option(help: "fashion-mnist, or any dataset `kiln train` reads (its test split).") var dataset: String = "fashion-mnist"
    @Option(name: .customLong("test-dataset"), help: "The test split of a .csv --dataset.") var testDataset: String?
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per batch of a zoo model (default 100; a model file's own).") var batchSize: Int?
    @Option(name: .customLong("max-images"), parsing: .unconditional, help: "Evaluate the first N test images only.") var maxImages: Int?
    @Option(parsing: .unconditional, help: "Threads for kernels.") var threads: Int = 1
    @Option(parsing: .unconditional, help: "Seed of a zoo model's initial weights (without --params).") var seed: UInt32 = 313
    @Option(name: .customLong("data-dir"), help: "Directory with the IDX files.") var dataDir: String = FashionMNIST.defaultDirectory
    @Flag(name: .customLong("allow-non-finite"), help: "Accept weights holding NaN or infinity (refused by default).") var allowNonFinite = false
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.model(model, files: true)
        if let batchSize { try Check.positive(batchSize, "--batch-size") }
        if let maxImages { try Check.positive(maxImages, "--max-images") }
        try Check.positive(threads, "--threads")
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            Context.setDefault { $0.threads = threads }
            Parameters.clear()
            let m = try ClassifierModel.load(model, params: params.path, batchSize: batchSize, seed: seed, allowNonFinite: allowNonFinite)
            let set = try ImageDataset.load(dataset, train: false, directory: dataDir, testSpec: testDataset)
            let layers = try m.integerLayers()
            let started = Date()
            let r = try ClassifierAccuracy.evaluate(scores: m.scores, input: m.input, on: set, maxImages: maxImages)
            let seconds = Date().timeIntervalSince(started)
            print("accuracy \(String(format: "%.4f", r.accuracy)) (\(r.correct) of \(r.total) test images of \(set.name), \(String(format: "%.1f", seconds)) s)")
            print("integer kernels: \(layers.integer) of \(layers.layers) convolution/affine layers" + (layers.integer > 0 ? " (path \(KernelPaths.integerPath))" : ""))
            for n in layers.plan.notes { print("note: \(n)") }
        }
    }
}
