import Testing
@testable import Kiln

/// Activations against naive references and finite differences.
struct ActivationTests {
    @Test func reluMatchesNaiveReference() throws {
        let x = Harness.random([3, 5], seed: 1)
        x.floats[0] = 0 // the kink: nnabla's gradient there is 0
        let y = try Harness.forward1(ReLU(), [x])
        #expect(y.toFloats() == x.toFloats().map { $0 > 0 ? $0 : 0 })
        let dy = Harness.random([3, 5], seed: 2)
        let dx = try Harness.backward(ReLU(), inputs: [x], outputGrads: [dy], want: [true])[0]!
        let expected = zip(x.toFloats(), dy.toFloats()).map { $0 > 0 ? $1 : 0 }
        #expect(dx.toFloats() == expected)
    }

    @Test func reluGradientMatchesFiniteDifferences() throws {
        let x = Harness.random([4, 6], seed: 3)
        for i in 0..<x.count where abs(x.floats[i]) < 0.05 { x.floats[i] = 0.3 } // stay off the kink
        let dy = Harness.random([4, 6], seed: 4)
        let dx = try Harness.backward(ReLU(), inputs: [x], outputGrads: [dy], want: [true])[0]!
        let num = try Harness.numericalGradient(ReLU(), inputs: [x], outputGrads: [dy], index: 0)
        #expect(mismatch(dx.toFloats(), num, rtol: 1e-2, atol: 1e-3) == nil)
    }

    @Test func reluRejectsIntegerInput() throws {
        #expect(throws: KilnError.self) { try ReLU().outputTypes([TensorType([2], .int32)]) }
    }
}
