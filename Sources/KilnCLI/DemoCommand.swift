import ArgumentParser
import Foundation
import Kiln

/// What `make demo` runs until training lands: LeNet on real Fashion-MNIST test images, forward only.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run LeNet forward on Fashion-MNIST test images and show the plan's memory figures.")

    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per batch.") var batchSize: Int = 64
    @Option(parsing: .unconditional, help: "Batches to run.") var batches: Int = 20
    @Option(name: .customLong("data-dir"), help: "Directory with the Fashion-MNIST IDX files.")
    var dataDir: String = FashionMNIST.defaultDirectory
    @Option(parsing: .unconditional, help: "Threads for kernels and OpenBLAS.") var threads: Int = 1
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        try Check.positive(batchSize, "--batch-size")
        try Check.positive(batches, "--batches")
        try Check.positive(threads, "--threads")
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            Context.setDefault { $0.threads = threads }
            let data = try FashionMNIST.load(train: false, directory: dataDir)
            Parameters.clear()
            let model = try Zoo.lenet.build(batchSize: batchSize, training: false)
            let exe = try Compiler.compile(model.prediction, .inference)
            try exe.plan.verify()
            print("LeNet inference plan, batch \(batchSize): \(exe.plan.steps.count) steps")
            print(exe.plan.summary())
            let training = try Compiler.plan([model.loss], .training)
            print("LeNet training plan (forward + backward), batch \(batchSize): \(training.steps.count) steps")
            print(training.summary())
            let classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
            var times: [Double] = []
            let n = min(batches, data.count / batchSize)
            for b in 0..<n {
                let start = b * batchSize
                try model.input.setData(Array(data.images[(start * 784)..<((start + batchSize) * 784)]))
                let t0 = DispatchTime.now().uptimeNanoseconds
                try exe.run()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            let y = model.prediction.d
            print("first 5 images of the last batch (untrained weights, so the guesses are arbitrary):")
            let last = (n - 1) * batchSize
            for i in 0..<min(5, batchSize) {
                let row = Array(y[(i * 10)..<(i * 10 + 10)])
                let best = row.indices.max { row[$0] < row[$1] } ?? 0
                let scores = row.map { String(format: "%6.3f", $0) }.joined(separator: " ")
                print("  label \(pad(classes[Int(data.labels[last + i])], 11))  scores [\(scores)]  argmax \(classes[best])")
            }
            let sorted = times.sorted()
            let median = sorted[sorted.count / 2]
            print(String(format: "forward: median %.3f ms per batch of %d (%.0f images/s) over %d batches, %d thread(s)",
                         median, batchSize, Double(batchSize) / median * 1000, n, threads))
        }
    }

    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}
