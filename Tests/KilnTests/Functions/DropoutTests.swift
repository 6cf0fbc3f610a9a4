import Testing
@testable import Kiln

/// Dropout: the mask statistics, seeding, and that backward uses the mask of the forward it follows.
struct DropoutTests {
    @Test(arguments: [0.5, 0.2, 0.8])
    func forwardScalesKeptValuesAndDropsAboutP(_ p: Double) throws {
        let x = Harness.random([100, 100], seed: 1, in: 0.5...1.5) // no zeros: y == 0 iff dropped
        let f = Dropout(p: p, seed: 3)
        let y = try Harness.forward1(f, [x])
        let scale = Float(1 / (1 - p))
        var dropped = 0
        for i in 0..<x.count {
            if y.floats[i] == 0 { dropped += 1 } else { #expect(y.floats[i] == x.floats[i] * scale) }
        }
        // 10000 Bernoulli draws: the fraction is within 5 standard deviations (< 0.025) of p.
        #expect(abs(Double(dropped) / 10000 - p) < 0.025, "dropped \(dropped) of 10000 for p \(p)")
    }

    @Test func backwardUsesTheMaskOfTheLastForward() throws {
        let x = Harness.random([50, 40], seed: 4, in: 0.5...1.5)
        let dy = Harness.random([50, 40], seed: 5)
        let f = Dropout(p: 0.3, seed: 9)
        // Harness.backward runs one forward, then backward: record that forward's output with a twin of the
        // same seed (its first run draws the same mask).
        let twin = Dropout(p: 0.3, seed: 9)
        let y = try Harness.forward1(twin, [x])
        let dx = try #require(try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0])
        let scale = Float(1 / 0.7)
        for i in 0..<x.count {
            #expect(dx.floats[i] == (y.floats[i] != 0 ? dy.floats[i] * scale : 0))
        }
        // Accumulate path adds the same thing.
        let start = Harness.random([50, 40], seed: 6)
        let g = Dropout(p: 0.3, seed: 9)
        let acc = try #require(try Harness.backward(g, inputs: [x], outputGrads: [dy], want: [true], initial: [start])[0])
        #expect(mismatch(acc.toFloats(), zip(dx.toFloats(), start.toFloats()).map { $0 + $1 }, rtol: 1e-6, atol: 1e-7) == nil)
    }

    /// Finite differences with the mask held fixed: every probe uses a fresh Dropout of the same seed, whose
    /// first forward draws the same mask as the one backward uses.
    @Test func gradientMatchesFiniteDifferencesForAFixedMask() throws {
        let x = Harness.random([6, 7], seed: 7)
        let dy = Harness.random([6, 7], seed: 8)
        let dx = try #require(try Harness.backward(Dropout(p: 0.4, seed: 21), inputs: [x], outputGrads: [dy], want: [true])[0])
        let eps: Float = 1e-2
        for e in 0..<x.count {
            var sums: [Double] = []
            for sign: Float in [1, -1] {
                let probe = Harness.copy(x)
                probe.floats[e] += sign * eps
                let y = try Harness.forward1(Dropout(p: 0.4, seed: 21), [probe])
                sums.append((0..<y.count).reduce(0.0) { $0 + Double(y.floats[$1]) * Double(dy.floats[$1]) })
            }
            let num = Float((sums[0] - sums[1]) / (2 * Double(eps)))
            #expect(abs(dx.floats[e] - num) <= 1e-3 + 1e-2 * abs(num), "element \(e): \(dx.floats[e]) vs \(num)")
        }
    }

    @Test func seedsAndRunsGiveDifferentMasks() throws {
        let x = Harness.random([64, 64], seed: 10, in: 0.5...1.5)
        let a = Dropout(p: 0.5, seed: 1)
        let first = try Harness.forward1(a, [x]).toFloats()
        let second = try Harness.forward1(a, [x]).toFloats()
        #expect(first != second, "each forward draws a new mask")
        #expect(try Harness.forward1(Dropout(p: 0.5, seed: 1), [x]).toFloats() == first, "same seed, same first mask")
        #expect(try Harness.forward1(Dropout(p: 0.5, seed: 2), [x]).toFloats() != first)
        let u1 = try Harness.forward1(Dropout(p: 0.5), [x]).toFloats()
        let u2 = try Harness.forward1(Dropout(p: 0.5), [x]).toFloats()
        #expect(u1 != u2, "unseeded dropouts get different streams")
        // p = 0 is the identity (nnabla itself requires p > 0).
        #expect(try Harness.forward1(Dropout(p: 0), [x]).toFloats() == x.toFloats())
    }

    @Test func rejectsBadArguments() throws {
        #expect(throws: KilnError.self) { try Dropout(p: 1).outputTypes([TensorType([3])]) }
        #expect(throws: KilnError.self) { try Dropout(p: -0.1).outputTypes([TensorType([3])]) }
        #expect(throws: KilnError.self) { try Dropout(p: .nan).outputTypes([TensorType([3])]) }
        #expect(throws: KilnError.self) { try Dropout(seed: -2).outputTypes([TensorType([3])]) }
        #expect(throws: KilnError.self) { try Dropout().outputTypes([TensorType([3], .int32)]) }
        #expect(throws: KilnError.self) { try Dropout().outputTypes([TensorType([3]), TensorType([3])]) }
        var r = ArgReader(function: "Dropout", values: [:])
        let d = try Dropout(arguments: &r)
        #expect(d.arguments.map { $0.0 } == ["p", "seed"])
        #expect(d.arguments.map { $0.1 } == [.double(0.5), .int(-1)])
    }

    /// Through a compiled plan: x.g is dy / (1 - p) exactly where the forward kept x.
    @Test func graphBackwardMatchesForwardMask() throws {
        let xa = Harness.random([20, 30], seed: 12, in: 0.5...1.5)
        let x = try Variable(xa, needGrad: true)
        let y = try F.dropout(x, p: 0.25, seed: 5)
        try y.forward()
        let yd = y.d
        try y.backward(grad: 1)
        let g = x.g
        for i in 0..<yd.count { #expect(g[i] == (yd[i] != 0 ? Float(1 / 0.75) : 0)) }
        #expect(yd.contains(0) && yd.contains { $0 != 0 })
    }
}
