import Foundation
import Testing
@testable import Kiln

/// What distributed training changes in the data, the trainer and the evaluator, in one process with
/// `FakeCommunicator` standing in for the other ranks (the real ones run under mpirun in
/// `MPITrainingTests`).
struct DistributedTrainingTests {
    @Test func slicesOfGlobalBatchesAreExactlyTheGlobalBatches() throws {
        // 10 samples, global batch 2 x 3: batches wrap across epochs and reshuffle, as one iterator of 6 does.
        let load: DataIterator.Load = { i in [[Float(i)]] }
        let global = try DataIterator(size: 10, batchSize: 6, shuffle: true, seed: 5, sampleShapes: [[1]], load: load)
        let ranks = try (0..<2).map { r in
            try DataIterator(size: 10, batchSize: 3, shuffle: true, seed: 5, sampleShapes: [[1]], slices: (r, 2), load: load)
        }
        for _ in 0..<7 {
            let whole = try global.next()[0]
            let parts = try ranks.flatMap { try $0.next()[0] }
            #expect(parts == whole)
            #expect(ranks.allSatisfy { $0.epoch == global.epoch && $0.position == global.position })
        }
        // Seeking (resume) to where the global iterator is gives the same next batch.
        let resumed = try DataIterator(size: 10, batchSize: 3, shuffle: true, seed: 5, sampleShapes: [[1]], slices: (1, 2), load: load)
        try resumed.seek(epoch: global.epoch, position: global.position)
        #expect(try resumed.next()[0] == Array(try global.next()[0][3..<6]))
        #expect(throws: KilnError.self) {
            try DataIterator(size: 10, batchSize: 3, sampleShapes: [[1]], slices: (2, 2), load: load)
        }
    }

    @Test func onlyRankZeroWritesAndEveryRankStartsFromRankZerosParameters() throws {
        for rank in [0, 1] {
            try Parameters.isolated {
                let dir = try trainingTempDir("rank\(rank)")
                defer { try? FileManager.default.removeItem(atPath: dir) }
                let m = try TinyRegression.model()
                let data = try TinyRegression.iterator()
                let solver = Sgd(lr: 0.01)
                solver.setParameters(Parameters.current())
                let comm = FakeCommunicator(workers: 2, rank: rank)
                let u = Updater(solver: solver, loss: m.loss,
                                dataFeeder: { let b = try data.next(); try m.x.setData(b[0]); try m.t.setData(b[1]) },
                                comm: comm)
                let trainer = Trainer(u, modelSavePath: dir, maxEpoch: 1, iterPerEpoch: 2)
                trainer.comm = comm
                try trainer.train()
                let files = try FileManager.default.contentsOfDirectory(atPath: dir)
                #expect(rank == 0 ? files.contains("checkpoint.json") : files.isEmpty, "rank \(rank) wrote \(files)")
                // Before the first step, from rank 0: the parameters, then the solver's state arrays and its
                // update counts (one call each).
                #expect(comm.broadcasts == 3)
            }
        }
    }

    @Test func ranksTrainingDifferentModelsAreTold() throws {
        try Parameters.isolated {
            let m = try TinyRegression.model()
            /// A world whose other rank reports a different model.
            final class Disagreeing: Communicator {
                var size: Int { 2 }
                func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws {}
                func allGather(_ array: NDArray, _ arrays: [NDArray]) throws {
                    try arrays[0].copy(from: array)
                    try arrays[1].copy(from: array)
                    arrays[1].int32s[2] += 1
                }
            }
            let comm = Disagreeing()
            _ = m
            #expect(throws: KilnError.self) { try comm.checkSameModel(Parameters.current(gradOnly: false)) }
            try FakeCommunicator(workers: 2).checkSameModel(Parameters.current(gradOnly: false))
        }
    }

    @Test func evaluatorReportsTheMeanOverRanks() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2])
            // Every fake rank sees the same batches, so the mean over ranks is the local mean.
            let comm = FakeCommunicator(workers: 2)
            var batch = 0
            let e = try Evaluator(F.mean(x), dataFeeder: { batch += 1; try x.setData([Float(batch), 3]) }, valIter: 2, comm: comm)
            try e.evaluate(0)
            #expect(e.lastValues == [2.25])
            #expect(comm.divisions == [true])
        }
    }

    @Test func lossScalingSkipsWhenAnyRankOverflows() throws {
        try Parameters.isolated {
            let m = try TinyRegression.model()
            let data = try TinyRegression.iterator()
            let solver = Sgd(lr: 0.01)
            solver.setParameters(Parameters.current())
            /// A world where another rank always overflows.
            final class OtherRankOverflows: Communicator {
                var size: Int { 2 }
                func allReduce(_ arrays: [NDArray], division: Bool, inplace: Bool) throws {}
                func anyRank(_ flag: Bool) throws -> Bool { true }
            }
            let before = TinyRegression.snapshot()
            let u = DynamicLossScalingUpdater(solver: solver, loss: m.loss, dataFeeder: {
                let b = try data.next(); try m.x.setData(b[0]); try m.t.setData(b[1])
            }, scale: 8, comm: OtherRankOverflows(), precision: .float)
            let outcome = try u.update()
            // This rank's gradients are finite, yet it backs off and skips with the others.
            #expect(!outcome.updated)
            #expect(outcome.attempts == DynamicLossScalingUpdater.maxRetries + 1)
            #expect(TinyRegression.snapshot() == before)
        }
    }
}
