import ArgumentParser
import Foundation
import Kiln
import KilnMPI
import KilnPlot

/// How the learning rate moves over the run.
enum LearningRateSchedule: String, ExpressibleByArgument, CaseIterable {
    /// The rate given, throughout.
    case constant
    /// From the rate given down to 0 along half a cosine over all the run's iterations (Loshchilov and
    /// Hutter's SGDR without restarts): the last updates are small, so the weights the run ends with are not
    /// the noisy ones of a full-size step.
    case cosine

    func rate(_ base: Float, iteration i: Int, of total: Int) -> Float {
        switch self {
        case .constant: return base
        case .cosine: return base * Float(0.5 * (1 + cos(Double.pi * Double(i) / Double(max(total, 1)))))
        }
    }
}

/// The solvers `kiln train` offers, with nnabla's defaults besides the learning rate.
enum SolverName: String, ExpressibleByArgument, CaseIterable {
    case adam, sgd, momentum

    func make(learningRate: Float) -> Solver {
        switch self {
        case .adam: Adam(alpha: learningRate)
        case .sgd: Sgd(lr: learningRate)
        case .momentum: Momentum(lr: learningRate)
        }
    }
}

/// `kiln train`: a zoo model or a graph file on an image dataset with the library's Trainer, Updater and
/// Evaluator.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a zoo model or graph file on an image dataset (softmax cross-entropy), on one process or data-parallel under mpirun.")

    @Argument(help: "A zoo model (\(Zoo.names.joined(separator: ", "))) or a graph file (.json kiln-graph/1, .onnx, .nnp) whose first output scores the classes.") var model: String
    @Option(help: "fashion-mnist; a directory of IDX files (MNIST layout) or of x_train/y_train/x_test/y_test .npy files; an .npz of those arrays; or a .csv in nnabla's dataset format (with --test-dataset).") var dataset: String = "fashion-mnist"
    @Option(name: .customLong("test-dataset"), help: "The test split of a .csv --dataset.") var testDataset: String?
    @Option(name: .customLong("random-crop"), parsing: .unconditional, help: "Augment: shift each training image by up to N pixels each way (a random crop of the zero-padded image).") var randomCrop: Int = 0
    @Flag(help: "Augment: mirror half of the training images left to right.") var flip = false
    @Option(parsing: .unconditional, help: "Epochs to train.") var epochs: Int = 1
    @Option(name: .customLong("batch-size"), parsing: .unconditional, help: "Images per training step (default 64; a graph file's own batch).") var batchSize: Int?
    @Option(help: "adam, sgd or momentum (momentum 0.9), nnabla's defaults otherwise.") var solver: SolverName = .adam
    @Option(name: .customLong("learning-rate"), parsing: .unconditional, help: "The solver's learning rate (Adam's alpha).") var learningRate: Float = 1e-3
    @Option(name: .customLong("lr-schedule"), help: "constant, or cosine: from --learning-rate down to 0 over the run (default: each zoo model's recipe, cosine for resnet20, constant for the others as in nnabla's examples).") var lrSchedule: LearningRateSchedule?
    @Option(help: "float, or half: float16 activations and gradients with dynamic loss scaling (nnabla's DynamicLossScalingUpdater).") var precision: Precision = .float
    @Flag(name: .customLong("no-recompute"), help: "Keep every value backward reads from forward, rather than rebuild BatchNormalization, Add2 and ReLU outputs in backward.") var noRecompute = false
    @Option(name: .customLong("loss-scale"), parsing: .unconditional, help: "Initial loss scale with --precision half.") var lossScale: Float = 8
    @Option(name: .customLong("monitor-path"), help: "Write nnabla-style monitor series here, and at the end their curves as curves.svg.") var monitorPath: String?
    @Option(name: .customLong("model-save-path"), help: "Save parameters, solver state and checkpoints here.") var modelSavePath: String?
    @Flag(help: "Continue from the checkpoint in --model-save-path.") var resume = false
    @Option(name: .customLong("checkpoint-interval"), parsing: .unconditional, help: "Also checkpoint every N iterations within an epoch.") var checkpointInterval: Int = 200
    @Option(parsing: .unconditional, help: "Seed for initial weights and shuffling.") var seed: UInt32 = 313
    @Option(parsing: .unconditional, help: "Threads for kernels and OpenBLAS.") var threads: Int = 1
    @Option(name: .customLong("data-dir"), help: "Directory with the IDX files.") var dataDir: String = FashionMNIST.defaultDirectory
    @Option(name: .customLong("max-iterations"), parsing: .unconditional, help: "Stop each epoch after this many iterations (for quick runs); also bounds the evaluation unless --eval-iterations is given.") var maxIterations: Int?
    @Option(name: .customLong("eval-iterations"), parsing: .unconditional, help: "Evaluate on this many test batches (100 images for zoo models) after each epoch (default: the whole test set).") var evalIterations: Int?
    @Flag(name: .customLong("allow-non-finite"), help: "Resume from a checkpoint whose parameters hold NaN or infinity (refused by default).")
    var allowNonFinite = false
    @Flag(help: "Data-parallel training over the processes of `mpirun -np N`: --batch-size is per process, rank r takes the r-th slice of each global batch of N x batch-size images, gradients are averaged; only rank 0 prints and writes files.")
    var distributed = false
    @Option(name: .customLong("bucket-size"), help: ArgumentHelp("With --distributed: all-reduce the gradients in buckets of at most this size (as --max-memory), or 'none' for one call per parameter.", valueName: "size"))
    var bucketSize: String = "4M"
    @Flag(name: .customLong("no-overlap"), help: "With --distributed: all-reduce the buckets after backward, rather than each as soon as backward has written it.")
    var noOverlap = false
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        _ = try MemoryBudgetOption.parse(bucketSize, option: "--bucket-size")
        try Check.model(model, files: true)
        try Check.positive(epochs, "--epochs")
        if let batchSize { try Check.positive(batchSize, "--batch-size") }
        try Check.notNegative(randomCrop, "--random-crop")
        try Check.positiveFinite(learningRate, "--learning-rate")
        try Check.positiveFinite(lossScale, "--loss-scale")
        try Check.positive(checkpointInterval, "--checkpoint-interval")
        try Check.positive(threads, "--threads")
        if let m = maxIterations { try Check.positive(m, "--max-iterations") }
        if let e = evalIterations { try Check.positive(e, "--eval-iterations") }
        if resume && modelSavePath == nil { throw ValidationError("--resume needs --model-save-path") }
    }

    func run() throws {
        try reportingErrors {
            guard distributed else { return try train(comm: nil) }
            try onEveryRank { try train(comm: $0) }
        }
    }

    private func train(comm: MPICommunicator?) throws {
        try memory.apply()
        Context.setDefault { $0.threads = threads }
        GlobalRandom.seed(seed)
        Parameters.clear()
        let train = try ImageDataset.load(dataset, train: true, directory: dataDir, testSpec: testDataset)
        let test = try ImageDataset.load(dataset, train: false, directory: dataDir, testSpec: testDataset)
        let asked = self.batchSize
        let ranks = comm?.size ?? 1, rank = comm?.rank ?? 0
        guard test.count >= ranks else {
            throw KilnError.invalidData("\(ranks) processes for \(test.count) test images: each evaluates at least one")
        }
        let m = try Zoo(rawValue: model).map {
            try TrainableModel.zoo($0, batchSize: asked ?? 64, evalBatchSize: min(100, test.count / ranks))
        }
            ?? TrainableModel.graphFile(model, batchSize: asked, evalBatchSize: min(100, test.count / ranks), allowNonFinite: allowNonFinite)
        let batchSize = m.batchSize, evalBatch = m.evalBatchSize
        guard train.sampleShape == test.sampleShape else {
            throw KilnError.dataset("\(dataset): training images are \(train.sampleShape), test images \(test.sampleShape)")
        }
        let adapter = try ImageAdapter(from: train.sampleShape, to: m.sampleShape)
        guard max(train.classes, test.classes) <= m.classes else {
            throw KilnError.dataset("\(train.name) has \(max(train.classes, test.classes)) classes; \(m.name) scores \(m.classes)")
        }
        // Each step takes one global batch of ranks x batch-size images, each evaluation one of ranks x eval batch.
        guard let globalBatch = Optional(batchSize.multipliedReportingOverflow(by: ranks)), !globalBatch.overflow,
              globalBatch.partialValue <= train.count else {
            throw KilnError.invalidData("\(ranks) process(es) x --batch-size \(batchSize) is more than the \(train.count) training images: one step must fit in the dataset")
        }
        guard evalBatch * ranks <= test.count else {
            throw KilnError.invalidData("\(ranks) process(es) x \(evalBatch) test images per evaluation batch is more than the \(test.count) test images")
        }
        let solver = self.solver.make(learningRate: learningRate)
        solver.setParameters(m.trainable)

        let augmentation = ImageAugmentation(pad: randomCrop, flip: flip, seed: seed &+ UInt32(truncatingIfNeeded: rank))
        let size = train.sampleSize
        func loader(_ set: ImageDataset, augment: Bool) -> DataIterator.Load {
            var image: [Float] = []
            return { i in
                let raw = set.images[(i * size)..<((i + 1) * size)]
                if adapter.isIdentity { image = Array(raw) } else { adapter.adapt(raw, into: &image) }
                if augment && !augmentation.isIdentity { augmentation.apply(&image, shape: m.sampleShape) }
                return [image, [Float(set.labels[i])]]
            }
        }
        let tdata = try DataIterator(size: train.count, batchSize: batchSize, shuffle: true, seed: seed,
                                     sampleShapes: [m.sampleShape, [1]], slices: (rank, ranks),
                                     load: loader(train, augment: true))
        let vdata = try DataIterator(size: test.count, batchSize: evalBatch, shuffle: false,
                                     sampleShapes: [m.sampleShape, [1]], slices: (rank, ranks),
                                     load: loader(test, augment: false))
        let perEpoch = min(train.count / (batchSize * ranks), maxIterations ?? Int.max)
        // The evaluation covers the whole test set unless bounded: by --eval-iterations, else by --max-iterations
        // (a quick run is quick throughout).
        let evalIterations = min(test.count / (evalBatch * ranks), self.evalIterations ?? maxIterations ?? Int.max)
        _ = try (CheckedInt(epochs) * perEpoch).get("--epochs \(epochs) x \(perEpoch) iterations per epoch")
        let progress = Progress(epochs: epochs, perEpoch: perEpoch, batchSize: batchSize * ranks,
                                evaluated: (evalIterations * evalBatch * ranks, test.count))
        // A resumed run keeps the monitor lines written before its checkpoint and continues after them.
        // (The trainer refuses a checkpoint outside this run; Int.max must not trap here before it can.)
        let resumeAt = resume && rank == 0 ? try modelSavePath.flatMap { try Checkpoint.latest(in: $0) }.map {
            $0.iteration == Int.max ? Int.max : $0.iteration + 1
        } : nil
        let monitor = try (rank == 0 ? monitorPath : nil).map { try Monitor($0, resumingAt: resumeAt) }
        let monitorLoss = try MonitorSeries("Training loss", monitor: monitor, interval: 10, verbose: false)
        let monitorError = try MonitorSeries("Test error", monitor: monitor, interval: 1, verbose: false)
        let monitorRate = try MonitorSeries("Learning rate", monitor: monitor, interval: 10, verbose: false)
        let monitorTime = try MonitorTimeElapsed("Training time", monitor: monitor, interval: 100, verbose: false)

        let feed = { let b = try tdata.next(); try m.input.setData(b[0]); try m.label.setData(b[1]) }
        let updater: any Updating
        let gradients: GradientUpdater
        var lossScaling: DynamicLossScalingUpdater? = nil
        switch precision {
        case .float:
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: feed)
            updater = u
            gradients = u
        case .half:
            let u = DynamicLossScalingUpdater(solver: solver, loss: m.loss, dataFeeder: feed, scale: lossScale)
            updater = u
            gradients = u
            lossScaling = u
        }
        gradients.recompute = !noRecompute
        if let comm {
            // The mean of the ranks' gradients: N ranks of batch B take the steps of one process of batch N x B.
            gradients.comm = comm
            gradients.division = true
            gradients.gradientBucketBytes = try MemoryBudgetOption.parse(bucketSize, option: "--bucket-size")
            gradients.overlap = !noOverlap
        }
        let plan = try (lossScaling?.plan() ?? (updater as? Updater)?.plan())?.plan
        guard let plan else { throw KilnError.planFailed("no training plan") }
        let evaluator = try Evaluator(
            m.error,
            dataFeeder: { let b = try vdata.next(); try m.evalInput.setData(b[0]); try m.evalLabel.setData(b[1]) },
            valIter: evalIterations,
            callbackOnFinish: [{ i, e in
                monitorError.add(i, e)
                progress.epochDone(i, testError: e)
            }], comm: comm)
        let total = epochs * perEpoch
        // ResNet-20 with batch normalization ends an epoch noisy at a constant rate (0.82-0.86 test accuracy
        // in three runs) and at 0.89-0.90 with the cosine decay; LeNet does better with nnabla's constant rate.
        let schedule = lrSchedule ?? (model == Zoo.resnet20.rawValue ? .cosine : .constant), baseRate = learningRate
        let trainer = Trainer(updater: [updater], evaluator: [evaluator], modelSavePath: modelSavePath,
                              maxEpoch: epochs, iterPerEpoch: perEpoch,
                              updateCallbackOnStart: [{ i in
                                  solver.learningRate = schedule.rate(baseRate, iteration: i, of: total)
                                  monitorRate.add(i, Double(solver.learningRate))
                              }],
                              updateCallbackOnFinish: [{ i in
                                  let loss = Double(m.loss.data.floats[0])
                                  monitorLoss.add(i, loss)
                                  monitorTime.add(i)
                                  progress.step(i, loss: loss)
                              }])
        trainer.checkpointInterval = checkpointInterval
        trainer.parameters = m.saved
        trainer.allowNonFinite = allowNonFinite
        trainer.comm = comm
        trainer.onResume = [{ start in
            // start < epochs x perEpoch (the trainer checks the checkpoint), so this bounds the replay.
            let consumed = try (CheckedInt(start) * batchSize * ranks).get("--resume: iteration \(start) x batch \(batchSize) x \(ranks) process(es)")
            try tdata.seek(epoch: consumed / train.count, position: consumed % train.count)
            progress.resumed(at: start)
        }]

        print("\(model) on \(train.name): \(train.count) training and \(test.count) test images, batch \(batchSize), \(solver.name)(\(learningRate))\(schedule == .cosine ? " with cosine decay" : ""), \(threads) thread(s)")
        if !adapter.isIdentity { print("images \(train.sampleShape) -> \(m.sampleShape): \(adapter.summary)") }
        if !augmentation.isIdentity {
            print("augmentation: " + [randomCrop > 0 ? "random crop (shift up to \(randomCrop) px)" : nil, flip ? "horizontal flip" : nil].compactMap { $0 }.joined(separator: ", "))
        }
        if let comm {
            let buckets = plan.gradientBuckets
            let reduction = buckets.isEmpty ? "one all-reduce per parameter"
                : "\(buckets.count) gradient bucket(s), all-reduced " + (noOverlap ? "after backward" : "while backward runs")
            print("distributed: \(comm.size) processes x batch \(batchSize) = global batch \(batchSize * comm.size); \(reduction); gradients averaged")
        }
        if precision == .half { print("precision half: float16 activations and gradients, dynamic loss scaling from \(lossScale)") }
        print("training plan: \(plan.steps.count) steps (forward \(plan.forwardStepCount))")
        print(plan.summary(), terminator: "")
        try trainer.train(resume: resume)
        progress.finish()
        if let u = lossScaling { print("final loss scale: \(u.scale)") }
        if let dir = modelSavePath { print("parameters and checkpoints in \(dir)") }
        if rank == 0, let dir = monitorPath {
            try CurvePlot(curves: MonitorCurves.read([dir])).write(to: dir + "/curves.svg")
            print("training curves in \(dir)/curves.svg (kiln plot draws several runs together)")
        }
    }
}

/// Progress on a terminal (one redrawn line) or periodic plain lines when output is a file or pipe.
final class Progress {
    let epochs: Int, perEpoch: Int, batchSize: Int
    let terminal = isatty(1) != 0
    var start = Date()
    var epochStart = Date()
    var lastDraw = Date.distantPast
    var lossSum = 0.0, lossCount = 0
    var firstIteration = 0

    /// Test images each evaluation covers, of how many.
    let evaluated: (images: Int, of: Int)

    init(epochs: Int, perEpoch: Int, batchSize: Int, evaluated: (images: Int, of: Int)) {
        self.epochs = epochs
        self.perEpoch = perEpoch
        self.batchSize = batchSize
        self.evaluated = evaluated
    }

    func resumed(at i: Int) {
        firstIteration = i
        print("resuming from the checkpoint: \(i) of \(epochs * perEpoch) steps done; continuing with step \(i % perEpoch + 1) of \(perEpoch) in epoch \(i / perEpoch + 1) of \(epochs)")
    }

    func step(_ i: Int, loss: Double) {
        lossSum += loss
        lossCount += 1
        let now = Date()
        let inEpoch = i % perEpoch + 1
        let periodic = inEpoch % 100 == 0 || inEpoch == perEpoch
        guard terminal ? now.timeIntervalSince(lastDraw) > 0.2 || inEpoch == perEpoch : periodic else { return }
        lastDraw = now
        let done = i + 1 - firstIteration
        let elapsed = now.timeIntervalSince(start)
        let rate = Double(done * batchSize) / max(elapsed, 1e-9)
        let remaining = Double(epochs * perEpoch - i - 1) * Double(batchSize) / max(rate, 1e-9)
        let mean = lossSum / Double(max(lossCount, 1))
        let epoch = i / perEpoch + 1
        if terminal {
            let width = 24, filled = width * inEpoch / perEpoch
            let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
            let line = "epoch \(epoch)/\(epochs) [\(bar)] \(inEpoch)/\(perEpoch)  loss "
                + String(format: "%.4f  %.0f img/s", mean, rate) + "  ETA \(Progress.clock(remaining))"
            FileHandle.standardOutput.write(Data(("\r" + line + "   ").utf8))
        } else {
            print("epoch \(epoch)/\(epochs) iteration \(inEpoch)/\(perEpoch) loss "
                  + String(format: "%.4f %.0f images/s", mean, rate) + " ETA \(Progress.clock(remaining))")
        }
        lossSum = 0
        lossCount = 0
    }

    func epochDone(_ i: Int, testError: Double) {
        let seconds = Date().timeIntervalSince(epochStart)
        epochStart = Date()
        if terminal { print("") }
        let over = evaluated.images < evaluated.of ? " on \(evaluated.images) of \(evaluated.of) test images" : ""
        print(String(format: "epoch %d/%d done in %.1f s: test accuracy %.4f (error %.4f)",
                     i / perEpoch + 1, epochs, seconds, 1 - testError, testError) + over)
    }

    func finish() {
        print(String(format: "trained in %.1f s", Date().timeIntervalSince(start)))
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
    }
}
