import KilnCore
import KilnGraph
import KilnCompiler

/// nnabla's `NaiveClassificationTrainer`: softmax cross-entropy loss and top-1 error on the training and
/// validation graphs, with the monitors nnabla sets up ("Training loss", "Training error" every 10
/// iterations, "Valid loss", "Valid error" every evaluation, "Training time" every 10 iterations).
public final class NaiveClassificationTrainer {
    public let trainer: Trainer
    /// The trainer's one updater (for adding callbacks).
    public let updater: Updater
    public let tloss: Variable, terror: Variable, vloss: Variable, verror: Variable
    public let monitorLoss: MonitorSeries, monitorError: MonitorSeries
    public let monitorValidLoss: MonitorSeries, monitorValidError: MonitorSeries
    public let monitorTime: MonitorTimeElapsed

    /// nnabla's signature: the graphs and iterators default to nil there too (its code then fails when it
    /// first uses them); here a missing one is an error naming it, when the trainer is made.
    public init(solver: Solver, tinput: Variable? = nil, tlabel: Variable? = nil, tpred: Variable? = nil,
                tdata: DataIterator? = nil, vinput: Variable? = nil, vlabel: Variable? = nil, vpred: Variable? = nil,
                vdata: DataIterator? = nil, monitorPath: String? = nil, modelSavePath: String? = nil, maxEpoch: Int = 1,
                iterPerEpoch: Int? = nil, valIter: Int? = nil) throws {
        let trainerName = String(describing: Self.self)
        let tinput = try required(tinput, "tinput", trainerName), tlabel = try required(tlabel, "tlabel", trainerName)
        let tpred = try required(tpred, "tpred", trainerName), tdata = try required(tdata, "tdata", trainerName)
        let vinput = try required(vinput, "vinput", trainerName), vlabel = try required(vlabel, "vlabel", trainerName)
        let vpred = try required(vpred, "vpred", trainerName), vdata = try required(vdata, "vdata", trainerName)
        try checkInputAndLabel(tdata, "tdata", "NaiveClassificationTrainer")
        try checkInputAndLabel(vdata, "vdata", "NaiveClassificationTrainer")
        let monitor = try monitorPath.map { try Monitor($0) }
        monitorLoss = try MonitorSeries("Training loss", monitor: monitor, interval: 10)
        monitorError = try MonitorSeries("Training error", monitor: monitor, interval: 10)
        monitorValidLoss = try MonitorSeries("Valid loss", monitor: monitor, interval: 1)
        monitorValidError = try MonitorSeries("Valid error", monitor: monitor, interval: 1)
        monitorTime = try MonitorTimeElapsed("Training time", monitor: monitor, interval: 10)

        tpred.persistent = true
        tloss = try F.mean(F.softmaxCrossEntropy(tpred, tlabel))
        terror = try F.mean(F.topNError(tpred.unlinked(), tlabel))
        vpred.persistent = true
        vloss = try F.mean(F.softmaxCrossEntropy(vpred, vlabel))
        verror = try F.mean(F.topNError(vpred.unlinked(), vlabel))

        let (tl, te, ml, me, mt) = (tloss, terror, monitorLoss, monitorError, monitorTime)
        let terrorPlan = try Compiler.compile(te, .inference)
        updater = Updater(
            solver: solver, loss: tl,
            dataFeeder: { let b = try tdata.next(); try tinput.setData(b[0]); try tlabel.setData(b[1]) },
            forwardCallbackOnFinish: [{ _ in try terrorPlan.run() }],
            updateCallbackOnFinish: [{ i in ml.add(i, tl.d[0]); me.add(i, te.d[0]); mt.add(i) }])
        let (mvl, mve) = (monitorValidLoss, monitorValidError)
        let evaluator = try Evaluator(
            vroot: [vloss, verror],
            dataFeeder: { let b = try vdata.next(); try vinput.setData(b[0]); try vlabel.setData(b[1]) },
            valIter: valIter ?? vdata.size / vdata.batchSize,
            callbackOnFinish: [{ i, v in mvl.add(i, v) }, { i, v in mve.add(i, v) }])
        trainer = Trainer(updater: [self.updater], evaluator: [evaluator], modelSavePath: modelSavePath,
                          maxEpoch: maxEpoch, iterPerEpoch: iterPerEpoch ?? tdata.size / tdata.batchSize)
    }

    public func train() throws { try trainer.train() }
}

/// nnabla's `NaiveRegressionTrainer`: mean squared error on the training and validation graphs, monitors
/// "Training loss" and "Training time" every 10 iterations and "Valid loss" every evaluation. (nnabla's
/// version referenced an undefined forward callback; there is none here.)
public final class NaiveRegressionTrainer {
    public let trainer: Trainer
    /// The trainer's one updater (for adding callbacks).
    public let updater: Updater
    public let tloss: Variable, vloss: Variable
    public let monitorLoss: MonitorSeries, monitorValidLoss: MonitorSeries
    public let monitorTime: MonitorTimeElapsed

    /// nnabla's signature: the graphs and iterators default to nil there too (its code then fails when it
    /// first uses them); here a missing one is an error naming it, when the trainer is made.
    public init(solver: Solver, tinput: Variable? = nil, tlabel: Variable? = nil, tpred: Variable? = nil,
                tdata: DataIterator? = nil, vinput: Variable? = nil, vlabel: Variable? = nil, vpred: Variable? = nil,
                vdata: DataIterator? = nil, monitorPath: String? = nil, modelSavePath: String? = nil, maxEpoch: Int = 1,
                iterPerEpoch: Int? = nil, valIter: Int? = nil) throws {
        let trainerName = String(describing: Self.self)
        let tinput = try required(tinput, "tinput", trainerName), tlabel = try required(tlabel, "tlabel", trainerName)
        let tpred = try required(tpred, "tpred", trainerName), tdata = try required(tdata, "tdata", trainerName)
        let vinput = try required(vinput, "vinput", trainerName), vlabel = try required(vlabel, "vlabel", trainerName)
        let vpred = try required(vpred, "vpred", trainerName), vdata = try required(vdata, "vdata", trainerName)
        try checkInputAndLabel(tdata, "tdata", "NaiveRegressionTrainer")
        try checkInputAndLabel(vdata, "vdata", "NaiveRegressionTrainer")
        let monitor = try monitorPath.map { try Monitor($0) }
        monitorLoss = try MonitorSeries("Training loss", monitor: monitor, interval: 10)
        monitorValidLoss = try MonitorSeries("Valid loss", monitor: monitor, interval: 1)
        monitorTime = try MonitorTimeElapsed("Training time", monitor: monitor, interval: 10)
        tpred.persistent = true
        tloss = try F.mean(F.squaredError(tpred, tlabel))
        vpred.persistent = true
        vloss = try F.mean(F.squaredError(vpred, vlabel))
        let (tl, ml, mt, mvl) = (tloss, monitorLoss, monitorTime, monitorValidLoss)
        updater = Updater(
            solver: solver, loss: tl,
            dataFeeder: { let b = try tdata.next(); try tinput.setData(b[0]); try tlabel.setData(b[1]) },
            updateCallbackOnFinish: [{ i in ml.add(i, tl.d[0]); mt.add(i) }])
        let evaluator = try Evaluator(
            vroot: [vloss],
            dataFeeder: { let b = try vdata.next(); try vinput.setData(b[0]); try vlabel.setData(b[1]) },
            valIter: valIter ?? vdata.size / vdata.batchSize,
            callbackOnFinish: [{ i, v in mvl.add(i, v) }])
        trainer = Trainer(updater: [self.updater], evaluator: [evaluator], modelSavePath: modelSavePath,
                          maxEpoch: maxEpoch, iterPerEpoch: iterPerEpoch ?? tdata.size / tdata.batchSize)
    }

    public func train() throws { try trainer.train() }
}

/// An argument nnabla lets default to None that the trainer cannot do without.
func required<T>(_ value: T?, _ name: String, _ trainer: String) throws -> T {
    guard let value else { throw KilnError.invalidData("\(trainer) needs \(name) (nnabla's default None leaves nothing to train on)") }
    return value
}

/// The naive trainers feed each batch's first variable to the input and its second to the label: an iterator
/// yielding fewer would index past its batch, so it is refused when the trainer is made.
func checkInputAndLabel(_ data: DataIterator, _ which: String, _ trainer: String) throws {
    guard data.sampleShapes.count >= 2 else {
        throw KilnError.dataset("\(trainer): \(which) yields \(data.sampleShapes.count) variable(s) per sample; it needs two (input, label)")
    }
}
