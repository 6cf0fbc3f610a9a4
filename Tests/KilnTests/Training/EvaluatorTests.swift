import Foundation
import Testing
@testable import Kiln

struct EvaluatorTests {
    static let batches: [[Float]] = [[1, 2, 3, 4], [-1, 0, 5, 2], [0.5, 0.5, 1, -2]]

    @Test func averagesEachRootOverTheBatches() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2, 2])
            let w = try Variable(shape: [2, 1], needGrad: true)
            try w.setData([Float(1), -1])
            let mean = try F.mean(x)                    // 2.5, 1.5, 0     -> 4/3
            let sum = try F.sum(x)                      // 10, 6, 0        -> 16/3
            let twice = try F.mulScalar(x, val: 2)      // element means 5, 3, 0 -> 8/3
            let proj = try F.affine(x, w)               // [x00-x01, x10-x11]: means -1, 1, 1.5 -> 0.5
            let log = EventLog()
            var k = 0
            var finished: [(String, Int, Double)] = []
            let e = try Evaluator(
                vroot: [mean, sum, twice, proj],
                dataFeeder: { log.add("feed"); try x.setData(Self.batches[k % 3]); k += 1 },
                valIter: 3,
                callbackOnStart: [{ i in log.add("start\(i)") }, { i in log.add("start'\(i)") }],
                callbackOnFinish: [{ i, v in finished.append(("mean", i, v)); log.add("finish\(i)") },
                                   { i, v in finished.append(("sum", i, v)) },
                                   { i, v in finished.append(("twice", i, v)) },
                                   { i, v in finished.append(("proj", i, v)) }])
            try e.evaluate(41)
            #expect(log.events == ["start41", "start'41", "feed", "feed", "feed", "finish41"])
            let expected: [(String, Double)] = [("mean", 4.0 / 3), ("sum", 16.0 / 3), ("twice", 8.0 / 3), ("proj", 0.5)]
            #expect(finished.count == 4)
            for ((name, i, v), (ename, ev)) in zip(finished, expected) {
                #expect(name == ename && i == 41)
                #expect(abs(v - ev) < 1e-6, "\(name): \(v) vs \(ev)")
            }
            #expect(e.lastValues.count == 4)
            // A second evaluation reuses the plans and sees the next batches (3 more feeds, same data).
            try e.evaluate(42)
            #expect(finished.count == 8 && finished[4].1 == 42 && abs(finished[4].2 - 4.0 / 3) < 1e-6)
            #expect(k == 6)
        }
    }

    @Test func singleRootConvenienceAndNoCallbacks() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2, 2])
            let e = try Evaluator(F.mean(x), dataFeeder: { try x.setData([Float(1), 1, 1, 5]) }, valIter: 2)
            try e.evaluate(0)
            #expect(e.lastValues == [2])
        }
    }

    @Test func callbackCountMustMatchRoots() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2])
            let a = try F.mean(x), b = try F.sum(x)
            #expect(throws: KilnError.self) {
                _ = try Evaluator(vroot: [a, b], valIter: 1, callbackOnFinish: [{ _, _ in }])
            }
            #expect(throws: KilnError.self) {
                _ = try Evaluator(vroot: [a], valIter: 1, callbackOnFinish: [{ _, _ in }, { _, _ in }])
            }
            #expect(throws: KilnError.self) { _ = try Evaluator(vroot: [a], valIter: 0) }
            // A failing feeder is reported.
            let e = try Evaluator(a, dataFeeder: { throw KilnError.dataset("no data") }, valIter: 1)
            #expect(throws: KilnError.dataset("no data")) { try e.evaluate(0) }
        }
    }
}
