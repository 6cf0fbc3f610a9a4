import ArgumentParser
import Kiln

/// The same as `make demo`: LeNet trained on Fashion-MNIST, with the plans' memory figures. It is
/// `kiln train lenet --dataset fashion-mnist` with the demo's few settings, so that the two never differ.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Train LeNet on Fashion-MNIST and show the plans' memory figures (what `make demo` runs).",
        discussion: "The same as `kiln train lenet --dataset fashion-mnist` with these options; see `kiln train --help` for every other setting.")

    @Option(parsing: .unconditional, help: "Epochs to train.") var epochs: Int = 1
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per training step.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Threads for kernels and OpenBLAS.") var threads: Int = 1
    @Option(name: .customLong("data-dir"), help: "Directory with the Fashion-MNIST IDX files.")
    var dataDir: String = FashionMNIST.defaultDirectory

    /// The train command this demo is.
    var train: [String] {
        ["lenet", "--dataset", "fashion-mnist", "--epochs", String(epochs), "--batch-size", String(batchSize),
         "--threads", String(threads), "--data-dir", dataDir]
    }

    /// The train command's own checks, reported as the demo's usage errors.
    func validate() throws {
        do { _ = try TrainCommand.parse(train) } catch { throw ValidationError(TrainCommand.message(for: error)) }
    }

    func run() throws {
        let command = try TrainCommand.parse(train)
        try command.run()
    }
}
