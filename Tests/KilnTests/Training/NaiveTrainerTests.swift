import Foundation
import Testing
@testable import Kiln
@testable import KilnTraining

/// Parses "index value" lines.
private func series(_ path: String) throws -> [(Int, Double)] {
    try textLines(path).map { line in
        let f = line.split(separator: " ")
        guard f.count == 2, let i = Int(f[0]), let v = Double(f[1]) else { throw KilnError.io("bad line '\(line)' in \(path)") }
        return (i, v)
    }
}

struct NaiveTrainerTests {
    /// Two well separated classes in 2-D: class 0 around (-1, -1), class 1 around (1, 1).
    static let points: [([Float], Float)] = (0..<40).map { i in
        let c = Float(i % 2), s: Float = c == 0 ? -1 : 1
        let jitter = Float((i * 7) % 10) / 20 - 0.25, jitter2 = Float((i * 3) % 10) / 20 - 0.25
        return ([s + jitter, s + jitter2], c)
    }

    @Test func classificationLossDecreasesAndMonitorsAreWritten() throws {
        let dir = try trainingTempDir("naive-cls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Parameters.isolated {
            let batch = 8
            let tdata = try DataIterator(size: 40, batchSize: batch, shuffle: true, seed: 1, sampleShapes: [[2], [1]]) { i in
                [Self.points[i].0, [Self.points[i].1]]
            }
            let vdata = try DataIterator(size: 40, batchSize: 10, sampleShapes: [[2], [1]]) { i in
                [Self.points[i].0, [Self.points[i].1]]
            }
            let tx = try Variable(shape: [batch, 2]), tl = try Variable(shape: [batch, 1], dtype: .int32)
            let vx = try Variable(shape: [10, 2]), vl = try Variable(shape: [10, 1], dtype: .int32)
            let tpred = try PF.affine(tx, outMaps: 2, name: "fc")
            let vpred = try PF.affine(vx, outMaps: 2, name: "fc")
            let solver = Sgd(lr: 0.5)
            solver.setParameters(Parameters.current())
            let t = try NaiveClassificationTrainer(solver: solver, tinput: tx, tlabel: tl, tpred: tpred, tdata: tdata,
                                                   vinput: vx, vlabel: vl, vpred: vpred, vdata: vdata,
                                                   monitorPath: dir, maxEpoch: 6)
            for m in [t.monitorLoss, t.monitorError, t.monitorValidLoss, t.monitorValidError] { m.verbose = false }
            t.monitorTime.verbose = false
            #expect(t.trainer.iterPerEpoch == 5)
            #expect(t.trainer.evaluator.first?.valIter == 4)
            var losses: [Double] = [], errors: [Double] = []
            // The callback captures the two variables, not the trainer that owns the updater (a cycle).
            let (tloss, terror) = (t.tloss, t.terror)
            t.updater.updateCallbackOnFinish.append { _ in
                losses.append(Double(tloss.d[0]))
                errors.append(Double(terror.d[0]))
            }
            try t.train()

            #expect(losses.count == 30)
            let loss = try series(dir + "/Training-loss.series.txt")
            let error = try series(dir + "/Training-error.series.txt")
            #expect(loss.map { $0.0 } == [9, 19, 29])
            #expect(error.map { $0.0 } == [9, 19, 29])
            // Each line is the mean of the 10 values since the previous flush, printed with 6 digits.
            for (k, (_, v)) in loss.enumerated() {
                let mean = losses[(k * 10)..<(k * 10 + 10)].reduce(0, +) / 10
                #expect(MonitorSeries.g(v) == MonitorSeries.g(mean), "loss line \(k): \(v) vs \(mean)")
            }
            for (k, (_, v)) in error.enumerated() {
                let mean = errors[(k * 10)..<(k * 10 + 10)].reduce(0, +) / 10
                #expect(abs(v - mean) < 1e-6, "error line \(k)")
            }
            #expect(loss[2].1 < loss[0].1 / 2, "loss did not decrease: \(loss)")
            #expect(losses.last! < losses.first!)
            let vloss = try series(dir + "/Valid-loss.series.txt")
            let verror = try series(dir + "/Valid-error.series.txt")
            #expect(vloss.map { $0.0 } == [4, 9, 14, 19, 24, 29])
            #expect(verror.map { $0.0 } == [4, 9, 14, 19, 24, 29])
            #expect(vloss.last!.1 < vloss.first!.1)
            #expect(verror.last!.1 == 0, "separable data should be classified perfectly: \(verror)")
            let time = try textLines(dir + "/Training-time.timer.txt")
            #expect(time.map { $0.split(separator: " ").first.map(String.init) ?? "" } == ["9", "19", "29"])
        }
    }

    @Test func regressionLossDecreasesAndMonitorsAreWritten() throws {
        let dir = try trainingTempDir("naive-reg")
        let saves = try trainingTempDir("naive-reg-params")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: saves) }
        try Parameters.isolated {
            // y = 2 x0 - x1 + 0.3
            let xs: [[Float]] = (0..<24).map { i in [Float(i % 6) / 3 - 1, Float(i / 6) / 2 - 0.75] }
            let ys: [Float] = xs.map { 2 * $0[0] - $0[1] + 0.3 }
            let tdata = try DataIterator(size: 24, batchSize: 6, shuffle: true, seed: 2, sampleShapes: [[2], [1]]) { i in [xs[i], [ys[i]]] }
            let vdata = try DataIterator(size: 24, batchSize: 12, sampleShapes: [[2], [1]]) { i in [xs[i], [ys[i]]] }
            let tx = try Variable(shape: [6, 2]), tl = try Variable(shape: [6, 1])
            let vx = try Variable(shape: [12, 2]), vl = try Variable(shape: [12, 1])
            let tpred = try PF.affine(tx, outMaps: 1, name: "lin")
            let vpred = try PF.affine(vx, outMaps: 1, name: "lin")
            let solver = Adam(alpha: 0.05)
            solver.setParameters(Parameters.current())
            let t = try NaiveRegressionTrainer(solver: solver, tinput: tx, tlabel: tl, tpred: tpred, tdata: tdata,
                                               vinput: vx, vlabel: vl, vpred: vpred, vdata: vdata,
                                               monitorPath: dir, modelSavePath: saves, maxEpoch: 5)
            t.monitorLoss.verbose = false
            t.monitorValidLoss.verbose = false
            t.monitorTime.verbose = false
            #expect(t.trainer.iterPerEpoch == 4)
            try t.train()
            let loss = try series(dir + "/Training-loss.series.txt")
            #expect(loss.map { $0.0 } == [9, 19])
            #expect(loss[1].1 < loss[0].1)
            let vloss = try series(dir + "/Valid-loss.series.txt")
            #expect(vloss.map { $0.0 } == [3, 7, 11, 15, 19])
            #expect(vloss.last!.1 < vloss.first!.1 / 2, "\(vloss)")
            // The validation value is the mean squared error over the whole validation set, by hand.
            let w = try #require(Parameters.get("lin/affine/W")).d, b = try #require(Parameters.get("lin/affine/b")).d
            var se = 0.0
            for (x, y) in zip(xs, ys) {
                let p = Double(x[0]) * Double(w[0]) + Double(x[1]) * Double(w[1]) + Double(b[0])
                se += (p - Double(y)) * (p - Double(y))
            }
            #expect(abs(vloss.last!.1 - se / 24) <= 1e-4 * max(1, se / 24), "\(vloss.last!.1) vs \(se / 24)")
            #expect(FileManager.default.fileExists(atPath: saves + "/params_000019.safetensors"))
            #expect(FileManager.default.fileExists(atPath: dir + "/Training-time.timer.txt"))
        }
    }

    /// An iterator yielding one variable per sample (no label) is refused when the trainer is made, naming
    /// it, instead of trapping on the missing label at the first batch.
    @Test func iteratorsWithoutALabelAreRefused() throws {
        try Parameters.isolated {
            let inputOnly = try DataIterator(size: 4, batchSize: 2, sampleShapes: [[2]]) { _ in [[0, 1]] }
            let paired = try DataIterator(size: 4, batchSize: 2, sampleShapes: [[2], [1]]) { _ in [[0, 1], [0]] }
            let x = try Variable(shape: [2, 2]), t = try Variable(shape: [2, 1], dtype: .int32)
            let y = try PF.affine(x, outMaps: 2, name: "fc")
            do {
                _ = try NaiveClassificationTrainer(solver: Sgd(), tinput: x, tlabel: t, tpred: y, tdata: inputOnly,
                                                   vinput: x, vlabel: t, vpred: y, vdata: paired)
                Issue.record("an iterator without labels was accepted")
            } catch {
                #expect("\(error)".contains("NaiveClassificationTrainer: tdata yields 1 variable(s) per sample; it needs two (input, label)"), "\(error)")
            }
            let r = try Variable(shape: [2, 1])
            do {
                _ = try NaiveRegressionTrainer(solver: Sgd(), tinput: x, tlabel: r, tpred: y, tdata: paired,
                                               vinput: x, vlabel: r, vpred: y, vdata: inputOnly)
                Issue.record("an iterator without labels was accepted")
            } catch {
                #expect("\(error)".contains("NaiveRegressionTrainer: vdata yields 1 variable(s) per sample"), "\(error)")
            }
        }
    }
}
