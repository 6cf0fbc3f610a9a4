import Foundation
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

    // MARK: - Helpers

    /// Analytic gradient vs central differences for input 0 of a one-input function.
    func expectGradientMatchesFiniteDifferences(_ f: any Function, _ x: NDArray, seed: UInt64,
                                                rtol: Float = 1e-2, atol: Float = 2e-3) throws {
        let y = try Harness.forward1(f, [x])
        let dy = Harness.random(y.shape, seed: seed)
        let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
        let num = try Harness.numericalGradient(f, inputs: [x], outputGrads: [dy], index: 0)
        let m = mismatch(dx.toFloats(), num, rtol: rtol, atol: atol)
        #expect(m == nil, "\(f.typeName): \(m ?? "")")
    }

    /// Random data kept at least `margin` away from 0 (the kink of the piecewise activations).
    func awayFromZero(_ shape: [Int], seed: UInt64, margin: Float = 0.05) -> NDArray {
        let x = Harness.random(shape, seed: seed, in: -2...2)
        for i in 0..<x.count where abs(x.floats[i]) < margin { x.floats[i] = x.floats[i] < 0 ? -0.5 : 0.5 }
        return x
    }

    // MARK: - LeakyReLU

    @Test(arguments: [0.1, 0.3, 0.0, -0.2])
    func leakyReluMatchesNaiveReference(alpha: Double) throws {
        let f = LeakyReLU(alpha: alpha)
        let x = Harness.random([2, 3, 4], seed: 11, in: -2...2)
        x.floats[0] = 0
        let y = try Harness.forward1(f, [x])
        let a = Float(alpha)
        var expected: [Float] = []
        for v in x.toFloats() { expected.append(v > 0 ? v : a * v) }
        #expect(y.toFloats() == expected)
        let dy = Harness.random([2, 3, 4], seed: 12)
        let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
        var expectedDx: [Float] = []
        for (v, g) in zip(x.toFloats(), dy.toFloats()) { expectedDx.append(v > 0 ? g : a * g) }
        #expect(dx.toFloats() == expectedDx)
        // at exactly 0 the gradient is alpha * dy (nnabla tests y > 0)
        #expect(dx.floats[0] == a * dy.floats[0])
    }

    @Test func leakyReluReadsOutputOnlyForNonNegativeAlpha() {
        #expect(LeakyReLU(alpha: 0.1).backwardReads(inputCount: 1, outputCount: 1).inputs == [false])
        #expect(LeakyReLU(alpha: 0.1).backwardReads(inputCount: 1, outputCount: 1).outputs == [true])
        #expect(LeakyReLU(alpha: -0.1).backwardReads(inputCount: 1, outputCount: 1).inputs == [true])
    }

    @Test func leakyReluGradientMatchesFiniteDifferences() throws {
        try expectGradientMatchesFiniteDifferences(LeakyReLU(alpha: 0.2), awayFromZero([3, 5], seed: 13), seed: 14)
        try expectGradientMatchesFiniteDifferences(LeakyReLU(alpha: -0.3), awayFromZero([3, 5], seed: 15), seed: 16)
    }

    // MARK: - ELU

    @Test(arguments: [1.0, 0.5])
    func eluMatchesNaiveReference(alpha: Double) throws {
        let f = ELU(alpha: alpha)
        let x = Harness.random([4, 5], seed: 21, in: -3...3)
        x.floats[3] = 0
        let y = try Harness.forward1(f, [x])
        let expected = x.toFloats().map { v -> Float in v >= 0 ? v : Float(alpha * (Foundation.exp(Double(v)) - 1)) }
        #expect(mismatch(y.toFloats(), expected, rtol: 1e-5, atol: 1e-6) == nil)
        let dy = Harness.random([4, 5], seed: 22)
        let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
        let expectedDx = zip(x.toFloats(), dy.toFloats()).map { v, g -> Float in
            v >= 0 ? g : Float(Double(g) * alpha * Foundation.exp(Double(v)))
        }
        #expect(mismatch(dx.toFloats(), expectedDx, rtol: 1e-5, atol: 1e-6) == nil)
        #expect(dx.floats[3] == dy.floats[3]) // x = 0 takes the x >= 0 branch
    }

    @Test func eluGradientMatchesFiniteDifferences() throws {
        try expectGradientMatchesFiniteDifferences(ELU(alpha: 0.7), awayFromZero([3, 4], seed: 23), seed: 24)
    }

    // MARK: - Sigmoid, Tanh, Identity

    @Test func sigmoidAndTanhMatchNaiveReferences() throws {
        let x = Harness.random([3, 7], seed: 31, in: -6...6)
        let dy = Harness.random([3, 7], seed: 32)
        let xs = x.toFloats().map(Double.init), gs = dy.toFloats().map(Double.init)
        let sig = xs.map { 1 / (1 + Foundation.exp(-$0)) }
        let th = xs.map { Foundation.tanh($0) }
        #expect(mismatch(try Harness.forward1(Sigmoid(), [x]).toFloats(), sig.map(Float.init), rtol: 1e-5, atol: 1e-7) == nil)
        #expect(mismatch(try Harness.forward1(Tanh(), [x]).toFloats(), th.map(Float.init), rtol: 1e-5, atol: 1e-7) == nil)
        let dSig = try Harness.backward(Sigmoid(), inputs: [x], outputGrads: [dy], want: [true])[0]!
        let dTh = try Harness.backward(Tanh(), inputs: [x], outputGrads: [dy], want: [true])[0]!
        let eSig = zip(sig, gs).map { s, g in Float(g * s * (1 - s)) }
        let eTh = zip(th, gs).map { t, g in Float(g * (1 - t * t)) }
        #expect(mismatch(dSig.toFloats(), eSig, rtol: 1e-4, atol: 1e-6) == nil)
        #expect(mismatch(dTh.toFloats(), eTh, rtol: 1e-4, atol: 1e-6) == nil)
    }

    @Test func sigmoidAndTanhGradientsMatchFiniteDifferences() throws {
        try expectGradientMatchesFiniteDifferences(Sigmoid(), Harness.random([2, 6], seed: 33, in: -3...3), seed: 34)
        try expectGradientMatchesFiniteDifferences(Tanh(), Harness.random([2, 6], seed: 35, in: -2...2), seed: 36)
    }

    @Test func identityCopiesValuesAndGradients() throws {
        let x = Harness.random([2, 3, 2], seed: 41)
        #expect(try Harness.forward1(Identity(), [x]).toFloats() == x.toFloats())
        let dy = Harness.random([2, 3, 2], seed: 42)
        let start = Harness.random([2, 3, 2], seed: 43)
        let dx = try Harness.backward(Identity(), inputs: [x], outputGrads: [dy], want: [true])[0]!
        #expect(dx.toFloats() == dy.toFloats())
        let acc = try Harness.backward(Identity(), inputs: [x], outputGrads: [dy], want: [true], initial: [start])[0]!
        #expect(acc.toFloats() == zip(dy.toFloats(), start.toFloats()).map { $0 + $1 })
        try expectGradientMatchesFiniteDifferences(Identity(), x, seed: 44)
    }

    // MARK: - Softmax, LogSoftmax

    /// Naive softmax / log-softmax along `axis` of a row-major array, in Double.
    func naiveSoftmax(_ x: [Float], _ shape: [Int], axis: Int, log: Bool) -> [Double] {
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        var y = [Double](repeating: 0, count: x.count)
        for o in 0..<outer {
            for i in 0..<inner {
                var m = -Double.infinity
                for j in 0..<n { m = Swift.max(m, Double(x[(o * n + j) * inner + i])) }
                var s = 0.0
                for j in 0..<n { s += Foundation.exp(Double(x[(o * n + j) * inner + i]) - m) }
                for j in 0..<n {
                    let v = Double(x[(o * n + j) * inner + i]) - m
                    y[(o * n + j) * inner + i] = log ? v - Foundation.log(s) : Foundation.exp(v) / s
                }
            }
        }
        return y
    }

    /// Naive vector-Jacobian products: softmax `y*(dy - sum(dy*y))`, log-softmax `dy - softmax*sum(dy)`.
    func naiveSoftmaxBackward(_ x: [Float], _ dy: [Float], _ shape: [Int], axis: Int, log: Bool) -> [Float] {
        let p = naiveSoftmax(x, shape, axis: axis, log: false)
        let outer = shape[..<axis].reduce(1, *), n = shape[axis], inner = shape[(axis + 1)...].reduce(1, *)
        var dx = [Float](repeating: 0, count: x.count)
        for o in 0..<outer {
            for i in 0..<inner {
                var s = 0.0
                for j in 0..<n {
                    let k = (o * n + j) * inner + i
                    s += log ? Double(dy[k]) : Double(dy[k]) * p[k]
                }
                for j in 0..<n {
                    let k = (o * n + j) * inner + i
                    dx[k] = Float(log ? Double(dy[k]) - p[k] * s : p[k] * (Double(dy[k]) - s))
                }
            }
        }
        return dx
    }

    @Test(arguments: [([2, 3, 4], nil), ([2, 3, 4], 0), ([2, 3, 4], 1), ([2, 3, 4], -2), ([5, 40], 1),
                      ([3, 17, 33], 1), ([6], nil)] as [([Int], Int?)])
    func softmaxAndLogSoftmaxMatchNaiveReferences(shape: [Int], axis: Int?) throws {
        let resolved = axis.map { $0 < 0 ? $0 + shape.count : $0 } ?? shape.count - 1
        let x = Harness.random(shape, seed: 51, in: -4...4)
        let dy = Harness.random(shape, seed: 52)
        for log in [false, true] {
            let f: any Function = log ? LogSoftmax(axis: axis) : Softmax(axis: axis)
            let y = try Harness.forward1(f, [x])
            let expected = naiveSoftmax(x.toFloats(), shape, axis: resolved, log: log).map(Float.init)
            #expect(mismatch(y.toFloats(), expected, rtol: 1e-5, atol: 1e-6) == nil, "\(f.typeName) \(shape) axis \(resolved)")
            let dx = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0]!
            let expectedDx = naiveSoftmaxBackward(x.toFloats(), dy.toFloats(), shape, axis: resolved, log: log)
            #expect(mismatch(dx.toFloats(), expectedDx, rtol: 1e-4, atol: 1e-6) == nil, "\(f.typeName) backward \(shape) axis \(resolved)")
            let start = Harness.random(shape, seed: 53)
            let acc = try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true], initial: [start])[0]!
            let expectedAcc = zip(dx.toFloats(), start.toFloats()).map { $0 + $1 }
            #expect(mismatch(acc.toFloats(), expectedAcc, rtol: 1e-5, atol: 1e-6) == nil)
        }
    }

    @Test func softmaxIsStableForLargeInputs() throws {
        let x = try Harness.floats([2, 3], [1000, 1001, 1002, -1000, -1001, -1002])
        let y = try Harness.forward1(Softmax(), [x]).toFloats()
        let ly = try Harness.forward1(LogSoftmax(axis: 1), [x]).toFloats()
        #expect(y.allSatisfy { $0.isFinite })
        #expect(ly.allSatisfy { $0.isFinite })
        // softmax([0, 1, 2]) is independent of a common shift
        let e = [Foundation.exp(-2.0), Foundation.exp(-1.0), 1.0], s = e.reduce(0, +)
        #expect(mismatch(Array(y[0..<3]), e.map { Float($0 / s) }, rtol: 1e-5, atol: 1e-7) == nil)
        #expect(mismatch(Array(ly[3..<6]), e.reversed().map { Float(Foundation.log($0 / s)) }, rtol: 1e-5, atol: 1e-6) == nil)
    }

    @Test(arguments: [0, 1, 2])
    func softmaxGradientsMatchFiniteDifferences(axis: Int) throws {
        let x = Harness.random([2, 3, 4], seed: 61, in: -2...2)
        try expectGradientMatchesFiniteDifferences(Softmax(axis: axis), x, seed: 62)
        try expectGradientMatchesFiniteDifferences(LogSoftmax(axis: axis), x, seed: 63)
    }

    @Test func softmaxAxisDefaultsToLastAndIsReported() throws {
        #expect(Softmax().arguments.isEmpty)
        #expect(Softmax(axis: 1).arguments.first?.1 == .int(1))
        var r = ArgReader(function: "Softmax", values: [:])
        let f = try Softmax(arguments: &r)
        #expect(f.axis == nil)
        let x = try Variable(shape: [2, 5])
        let y = try F.softmax(x)
        #expect(y.shape == [2, 5])
        #expect((y.parent?.function as? Softmax)?.axis == 1)
    }

    @Test func activationErrors() throws {
        let ints = TensorType([2, 3], .int32)
        for f in [LeakyReLU(), ELU(), Sigmoid(), Tanh(), Identity(), Softmax(), LogSoftmax()] as [any Function] {
            #expect(throws: KilnError.self) { try f.outputTypes([ints]) }
            #expect(throws: KilnError.self) { try f.outputTypes([]) }
        }
        let x = TensorType([2, 3, 4])
        #expect(throws: KilnError.self) { try Softmax(axis: 3).outputTypes([x]) }
        #expect(throws: KilnError.self) { try Softmax(axis: -4).outputTypes([x]) }
        #expect(throws: KilnError.self) { try LogSoftmax(axis: 5).outputTypes([x]) }
        #expect(throws: KilnError.self) { try Softmax().outputTypes([TensorType([])]) }
        #expect(throws: KilnError.self) {
            try FunctionRegistry.make(type: "LeakyReLU", arguments: ["alpha": .string("big")])
        }
    }
}
