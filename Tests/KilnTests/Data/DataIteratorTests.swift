import Foundation
import Testing
@testable import Kiln

/// Sample i is [i] (and [10 i, 10 i + 1] as a second variable), so batches show which samples they hold.
private func indexIterator(size: Int, batchSize: Int, shuffle: Bool, seed: UInt32 = 7) throws -> DataIterator {
    try DataIterator(size: size, batchSize: batchSize, shuffle: shuffle, seed: seed, sampleShapes: [[1], [2]]) { i in
        [[Float(i)], [Float(10 * i), Float(10 * i + 1)]]
    }
}

private func ids(_ batch: [[Float]]) -> [Int] { batch[0].map { Int($0) } }

struct DataIteratorTests {
    @Test func unshuffledOrderWrapsMidBatch() throws {
        let it = try indexIterator(size: 10, batchSize: 4, shuffle: false)
        #expect(ids(try it.next()) == [0, 1, 2, 3])
        #expect(it.epoch == 0 && it.position == 4)
        let b = try it.next()
        #expect(ids(b) == [4, 5, 6, 7])
        #expect(b[1] == [40, 41, 50, 51, 60, 61, 70, 71])
        #expect(ids(try it.next()) == [8, 9, 0, 1])
        #expect(it.epoch == 1 && it.position == 2)
        #expect(ids(try it.next()) == [2, 3, 4, 5])
    }

    @Test func shuffleMatchesNumpyPermutationsPerEpoch() throws {
        // numpy.random.RandomState(7): permutation(10) twice (nnabla draws a fresh permutation each epoch).
        let epoch0 = [8, 5, 0, 2, 1, 9, 7, 3, 6, 4], epoch1 = [1, 3, 2, 5, 9, 0, 4, 6, 7, 8]
        let it = try indexIterator(size: 10, batchSize: 5, shuffle: true, seed: 7)
        var seen: [Int] = []
        for _ in 0..<4 { seen += ids(try it.next()) }
        #expect(seen == epoch0 + epoch1)
    }

    @Test func everySampleOncePerEpochAcrossMidBatchWraps() throws {
        let it = try indexIterator(size: 10, batchSize: 3, shuffle: true, seed: 11)
        var seen: [Int] = []
        for _ in 0..<20 { seen += ids(try it.next()) }   // 60 samples: 6 epochs, wrapping inside batches
        var orders: [[Int]] = []
        for e in 0..<6 {
            let epoch = Array(seen[(e * 10)..<((e + 1) * 10)])
            #expect(epoch.sorted() == Array(0..<10), "epoch \(e): \(epoch)")
            orders.append(epoch)
        }
        #expect(Set(orders.map { "\($0)" }).count > 1)
        #expect(it.epoch == 5 && it.position == 10)
    }

    @Test func shuffleIsDeterministicPerSeed() throws {
        func take(_ seed: UInt32) throws -> [Int] {
            let it = try indexIterator(size: 20, batchSize: 6, shuffle: true, seed: seed)
            var s: [Int] = []
            for _ in 0..<7 { s += ids(try it.next()) }
            return s
        }
        #expect(try take(5) == take(5))
        #expect(try take(5) != take(6))
        #expect(try take(5) != Array(0..<42).map { $0 % 20 })
    }

    @Test(arguments: [(false, 4), (true, 4), (true, 3), (true, 10)])
    func seekReproducesTheUninterruptedSequence(shuffle: Bool, batchSize: Int) throws {
        let reference = try indexIterator(size: 10, batchSize: batchSize, shuffle: shuffle, seed: 3)
        var batches: [[[Float]]] = []
        for _ in 0..<12 { batches.append(try reference.next()) }
        for k in 0..<8 {
            // A fresh iterator moved to where the reference was after k batches.
            let it = try indexIterator(size: 10, batchSize: batchSize, shuffle: shuffle, seed: 3)
            let consumed = k * batchSize
            try it.seek(epoch: consumed / 10, position: consumed % 10)
            for j in k..<12 {
                #expect(try it.next() == batches[j], "seek after \(k) batches, batch \(j)")
            }
        }
        // Seeking to the very end of an epoch is the same as the start of the next one.
        let a = try indexIterator(size: 10, batchSize: batchSize, shuffle: shuffle, seed: 3)
        let b = try indexIterator(size: 10, batchSize: batchSize, shuffle: shuffle, seed: 3)
        try a.seek(epoch: 1, position: 10)
        try b.seek(epoch: 2, position: 0)
        #expect(try a.next() == b.next())
    }

    @Test func badSizesThrow() throws {
        let load: DataIterator.Load = { _ in [[0]] }
        #expect(throws: KilnError.self) { _ = try DataIterator(size: 0, batchSize: 1, sampleShapes: [[1]], load: load) }
        #expect(throws: KilnError.self) { _ = try DataIterator(size: -3, batchSize: 1, sampleShapes: [[1]], load: load) }
        #expect(throws: KilnError.self) { _ = try DataIterator(size: 4, batchSize: 0, sampleShapes: [[1]], load: load) }
        #expect(throws: KilnError.self) { _ = try DataIterator(size: 4, batchSize: 2, sampleShapes: [[-1]], load: load) }
        // A loader giving the wrong number of variables or values.
        let wrongCount = try DataIterator(size: 4, batchSize: 2, sampleShapes: [[2]], load: load)
        #expect(throws: KilnError.self) { _ = try wrongCount.next() }
        let wrongVars = try DataIterator(size: 4, batchSize: 2, sampleShapes: [[1], [1]], load: load)
        #expect(throws: KilnError.self) { _ = try wrongVars.next() }
        let failing = try DataIterator(size: 4, batchSize: 2, sampleShapes: [[1]]) { _ in throw KilnError.dataset("broken") }
        #expect(throws: KilnError.dataset("broken")) { _ = try failing.next() }
        let it = try indexIterator(size: 10, batchSize: 2, shuffle: true)
        #expect(throws: KilnError.self) { try it.seek(epoch: 0, position: 11) }
        #expect(throws: KilnError.self) { try it.seek(epoch: -1, position: 0) }
        #expect(throws: KilnError.self) { try it.seek(epoch: 0, position: -1) }
        // A batch larger than the data set takes samples from the next epochs.
        let big = try indexIterator(size: 3, batchSize: 7, shuffle: false)
        #expect(ids(try big.next()) == [0, 1, 2, 0, 1, 2, 0])
        #expect(big.epoch == 2)
    }

    @Test func dataIteratorSimpleIsTheSameIterator() throws {
        let it = try dataIteratorSimple(load: { i in [[Float(i)]] }, size: 5, batchSize: 2, sampleShapes: [[1]])
        #expect(it.size == 5 && it.batchSize == 2 && !it.shuffle)
        #expect(try it.next() == [[0, 1]])
    }
}
