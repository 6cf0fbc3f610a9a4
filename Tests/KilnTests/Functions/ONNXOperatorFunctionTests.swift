import Foundation
import Testing
@testable import Kiln

/// The functions added for the operators real ONNX exports use (nnabla's Exp, Log, Abs, Floor, Ceil, Erf,
/// SoftPlus, SoftSign, SELU, HardSigmoid, ReLU6, MaximumScalar, MinimumScalar, Pow2, Maximum2, Minimum2,
/// PReLU, Max, Min, Pad, Gather, BatchMatmul, LayerNormalization, InstanceNormalization; and HardSwish, LRN):
/// forward against naive references written here in Double, backward against central finite differences.
struct ONNXOperatorFunctionTests {
    struct UnaryCase: CustomTestStringConvertible, Sendable {
        let function: @Sendable () -> any Function
        let reference: @Sendable (Double) -> Double
        let range: ClosedRange<Float>
        /// Points where the function has a kink or jump: test inputs keep away from them.
        let kinks: [Float]
        var testDescription: String { function().typeName }
    }

    static let unaryCases: [UnaryCase] = [
        UnaryCase(function: { Exp() }, reference: { Foundation.exp($0) }, range: -3...3, kinks: []),
        UnaryCase(function: { Log() }, reference: { Foundation.log($0) }, range: 0.2...4, kinks: []),
        UnaryCase(function: { Abs() }, reference: { Swift.abs($0) }, range: -2...2, kinks: [0]),
        UnaryCase(function: { Erf() }, reference: { Foundation.erf($0) }, range: -2...2, kinks: []),
        UnaryCase(function: { SoftPlus() }, reference: { Foundation.log(1 + Foundation.exp($0)) }, range: -4...4, kinks: []),
        UnaryCase(function: { SoftPlus(beta: 2.5) }, reference: { Foundation.log(1 + Foundation.exp(2.5 * $0)) / 2.5 }, range: -4...4, kinks: []),
        UnaryCase(function: { SoftSign() }, reference: { $0 / (1 + Swift.abs($0)) }, range: -3...3, kinks: [0]),
        UnaryCase(function: { SELU() }, reference: { $0 > 0 ? 1.05070098735548 * $0 : 1.05070098735548 * 1.673263242354377 * (Foundation.exp($0) - 1) },
                  range: -3...3, kinks: [0]),
        UnaryCase(function: { HardSigmoid() }, reference: { Swift.min(Swift.max(0.2 * $0 + 0.5, 0), 1) }, range: -4...4, kinks: [-2.5, 2.5]),
        UnaryCase(function: { HardSwish() }, reference: { $0 * Swift.min(Swift.max($0 + 3, 0), 6) / 6 }, range: -5...5, kinks: [-3, 3]),
        UnaryCase(function: { ReLU6() }, reference: { Swift.min(Swift.max($0, 0), 6) }, range: -2...8, kinks: [0, 6]),
        UnaryCase(function: { MaximumScalar(val: 0.25) }, reference: { Swift.max($0, 0.25) }, range: -2...2, kinks: [0.25]),
        UnaryCase(function: { MinimumScalar(val: -0.5) }, reference: { Swift.min($0, -0.5) }, range: -2...2, kinks: [-0.5]),
    ]

    /// Random values in `range` at least `margin` from every kink.
    static func input(_ shape: [Int], seed: UInt64, range: ClosedRange<Float>, kinks: [Float], margin: Float = 0.05) -> NDArray {
        let x = Harness.random(shape, seed: seed, in: range)
        for i in 0..<x.count {
            for k in kinks where Swift.abs(x.floats[i] - k) < margin { x.floats[i] = k + (x.floats[i] < k ? -0.2 : 0.2) }
        }
        return x
    }

    static func expectGradient(_ f: any Function, _ inputs: [NDArray], index: Int, seed: UInt64, rtol: Float = 1e-2, atol: Float = 2e-3) throws {
        let y = try Harness.forward(f, inputs).outputs[0]
        let dy = Harness.random(y.shape, seed: seed)
        var want = [Bool](repeating: false, count: inputs.count)
        want[index] = true
        let dx = try #require(try Harness.backward(f, inputs: inputs, outputGrads: [dy], want: want)[index])
        let num = try Harness.numericalGradient(f, inputs: inputs, outputGrads: [dy], index: index)
        let m = mismatch(dx.toFloats(), num, rtol: rtol, atol: atol)
        #expect(m == nil, "\(f.typeName) input \(index): \(m ?? "")")
    }

    @Test(arguments: unaryCases)
    func unaryMatchesReferenceAndFiniteDifferences(_ c: UnaryCase) throws {
        let f = c.function()
        let x = Self.input([3, 7], seed: 21, range: c.range, kinks: c.kinks)
        let y = try Harness.forward1(f, [x])
        let want = x.toFloats().map { Float(c.reference(Double($0))) }
        #expect(mismatch(y.toFloats(), want, rtol: 1e-5, atol: 1e-6) == nil, "\(f.typeName) forward")
        try Self.expectGradient(f, [x], index: 0, seed: 22)
    }

    /// nnabla's Floor and Ceil pass the gradient straight through (their true derivative is 0 almost
    /// everywhere, so finite differences do not apply).
    @Test func floorAndCeilRoundAndPassTheGradientThrough() throws {
        let x = Self.input([2, 9], seed: 23, range: -3...3, kinks: [-3, -2, -1, 0, 1, 2, 3])
        let dy = Harness.random([2, 9], seed: 24)
        for (f, r) in [(Floor() as any Function, { (v: Float) in v.rounded(.down) }), (Ceil(), { $0.rounded(.up) })] {
            #expect(try Harness.forward1(f, [x]).toFloats() == x.toFloats().map(r))
            let dx = try #require(try Harness.backward(f, inputs: [x], outputGrads: [dy], want: [true])[0])
            #expect(dx.toFloats() == dy.toFloats())
        }
    }

    /// nnabla's tie rule: MaximumScalar's gradient at x == val is 0; Maximum2 gives a tie to x1.
    @Test func tiesFollowNNabla() throws {
        let x = try Harness.floats([3], [0.25, 1, -1])
        let dy = try Harness.floats([3], [1, 1, 1])
        let dx = try #require(try Harness.backward(MaximumScalar(val: 0.25), inputs: [x], outputGrads: [dy], want: [true])[0])
        #expect(dx.toFloats() == [0, 1, 0])
        let a = try Harness.floats([2], [1, 2]), b = try Harness.floats([2], [1, 3])
        let g = try Harness.backward(Maximum2(), inputs: [a, b], outputGrads: [try Harness.floats([2], [1, 1])], want: [true, true])
        #expect(g[0]?.toFloats() == [0, 0])
        #expect(g[1]?.toFloats() == [1, 1])
    }

    @Test func binaryFunctionsBroadcastAndDifferentiate() throws {
        let a = Self.input([2, 3, 4], seed: 31, range: 0.5...2, kinks: [])
        let b = Self.input([1, 3, 1], seed: 32, range: -1.5...1.5, kinks: [])
        let cases: [(any Function, (Double, Double) -> Double)] = [
            (Pow2(), { Foundation.pow($0, $1) }), (Maximum2(), { Swift.max($0, $1) }), (Minimum2(), { Swift.min($0, $1) }),
        ]
        for (f, r) in cases {
            let y = try Harness.forward1(f, [a, b])
            #expect(y.shape == [2, 3, 4])
            var want: [Float] = []
            for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
                want.append(Float(r(Double(a.floats[(i * 3 + j) * 4 + k]), Double(b.floats[j]))))
            } } }
            #expect(mismatch(y.toFloats(), want, rtol: 1e-5, atol: 1e-6) == nil, "\(f.typeName)")
            // Away from ties for the gradients of Maximum2 and Minimum2 (values of a and b differ by > 0.05 here).
            try Self.expectGradient(f, [a, b], index: 0, seed: 33)
            try Self.expectGradient(f, [a, b], index: 1, seed: 34)
        }
        #expect(Maximum2().arguments.isEmpty, "nnabla's Maximum2 has no inplace argument")
    }

    @Test func preluPerChannelAndShared() throws {
        let x = Self.input([2, 3, 4], seed: 41, range: -2...2, kinks: [0])
        let w = try Harness.floats([3], [0.1, -0.3, 0.7])
        let y = try Harness.forward1(PReLU(baseAxis: 1), [x, w])
        var want: [Float] = []
        for i in 0..<24 { let v = x.floats[i]; want.append(v > 0 ? v : w.floats[(i / 4) % 3] * v) }
        #expect(y.toFloats() == want)
        try Self.expectGradient(PReLU(baseAxis: 1), [x, w], index: 0, seed: 42)
        try Self.expectGradient(PReLU(baseAxis: 1), [x, w], index: 1, seed: 43)
        let shared = try Harness.floats([], [0.2])
        #expect(try Harness.forward1(PReLU(), [x, shared]).toFloats() == x.toFloats().map { $0 > 0 ? $0 : 0.2 * $0 })
        try Self.expectGradient(PReLU(), [x, shared], index: 1, seed: 44)
        #expect(throws: KilnError.self) { try PReLU().outputTypes([TensorType([2, 3, 4]), TensorType([4])]) }
    }

    @Test func maxAndMinReduceWithGradientToTheFirstExtreme() throws {
        let x = Harness.random([2, 3, 4], seed: 51)
        for (f, pick) in [(Max(axes: [1], keepDims: false) as any Function, { (a: [Float]) in a.max()! }),
                          (Min(axes: [1], keepDims: false), { $0.min()! })] {
            let y = try Harness.forward1(f, [x])
            #expect(y.shape == [2, 4])
            var want: [Float] = []
            for i in 0..<2 { for k in 0..<4 { want.append(pick((0..<3).map { x.floats[(i * 3 + $0) * 4 + k] })) } }
            #expect(y.toFloats() == want)
            try Self.expectGradient(f, [x], index: 0, seed: 52)
        }
        // A tie: the gradient goes to the first of the equal elements only.
        let t = try Harness.floats([4], [1, 3, 3, 2])
        let g = try Harness.backward(Max(), inputs: [t], outputGrads: [try Harness.floats([], [5])], want: [true])
        #expect(g[0]?.toFloats() == [0, 5, 0, 0])
        let all = try Harness.forward1(Min(axes: nil, keepDims: true), [x])
        #expect(all.shape == [1, 1, 1] && all.floats[0] == x.toFloats().min())
    }

    @Test(arguments: [Pad.Mode.constant, .reflect, .repeat])
    func padMatchesNumpyStyleReference(_ mode: Pad.Mode) throws {
        // nnabla's documented examples.
        let v = try Harness.floats([4], [1, 2, 3, 4])
        let one = try Harness.forward1(Pad(padWidth: [3, 3], mode: mode, constantValue: -1), [v]).toFloats()
        switch mode {
        case .constant: #expect(one == [-1, -1, -1, 1, 2, 3, 4, -1, -1, -1])
        case .reflect: #expect(one == [4, 3, 2, 1, 2, 3, 4, 3, 2, 1])
        case .repeat: #expect(one == [1, 1, 1, 1, 2, 3, 4, 4, 4, 4])
        }
        let x = Harness.random([2, 3, 4], seed: 61)
        let f = Pad(padWidth: [1, 2, 0, 3], mode: mode, constantValue: 0.5)
        let y = try Harness.forward1(f, [x])
        #expect(y.shape == [2, 6, 7])
        // Reference: each output index mapped back per axis by the mode's rule.
        func src(_ j: Int, _ n: Int) -> Int? {
            if (0..<n).contains(j) { return j }
            switch mode {
            case .constant: return nil
            case .repeat: return j < 0 ? 0 : n - 1
            case .reflect: return j < 0 ? -j : 2 * (n - 1) - j
            }
        }
        var want: [Float] = []
        for i in 0..<2 { for a in 0..<6 { for b in 0..<7 {
            if let p = src(a - 1, 3), let q = src(b, 4) { want.append(x.floats[(i * 3 + p) * 4 + q]) } else { want.append(0.5) }
        } } }
        #expect(y.toFloats() == want)
        try Self.expectGradient(f, [x], index: 0, seed: 62)
    }

    @Test func gatherPicksAlongAnAxisAndScattersTheGradient() throws {
        let x = Harness.random([3, 4, 2], seed: 71)
        let idx = try Harness.ints([2, 2], [3, -1, 0, 3])
        let f = Gather(axis: 1)
        let y = try Harness.forward1(f, [x, idx])
        #expect(y.shape == [3, 2, 2, 2])
        var want: [Float] = []
        for i in 0..<3 { for k in [3, 3, 0, 3] { for j in 0..<2 { want.append(x.floats[(i * 4 + k) * 2 + j]) } } }
        #expect(y.toFloats() == want)
        try Self.expectGradient(f, [x, idx], index: 0, seed: 72)
        let bad = try Harness.ints([1], [4])
        #expect(throws: KilnError.self) { _ = try Harness.forward1(f, [x, bad]) }
    }

    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func batchMatmulMatchesNaiveProducts(_ t: (Bool, Bool)) throws {
        let (m, n, k) = (3, 4, 5)
        let a = Harness.random(t.0 ? [2, k, m] : [2, m, k], seed: 81), b = Harness.random(t.1 ? [2, n, k] : [2, k, n], seed: 82)
        let f = BatchMatmul(transposeA: t.0, transposeB: t.1)
        let y = try Harness.forward1(f, [a, b])
        #expect(y.shape == [2, m, n])
        var want: [Float] = []
        for bi in 0..<2 { for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = t.0 ? a.floats[(bi * k + p) * m + i] : a.floats[(bi * m + i) * k + p]
                let bv = t.1 ? b.floats[(bi * n + j) * k + p] : b.floats[(bi * k + p) * n + j]
                s += Double(av) * Double(bv)
            }
            want.append(Float(s))
        } } }
        #expect(mismatch(y.toFloats(), want, rtol: 1e-5, atol: 1e-5) == nil)
        try Self.expectGradient(f, [a, b], index: 0, seed: 83)
        try Self.expectGradient(f, [a, b], index: 1, seed: 84)
    }

    /// Reference normalisation in Double over contiguous groups.
    static func normalized(_ x: [Float], groups: Int, eps: Double, gamma: (Int, Int) -> Float, beta: (Int, Int) -> Float) -> [Float] {
        let size = x.count / groups
        var out: [Float] = []
        for g in 0..<groups {
            let part = x[(g * size)..<((g + 1) * size)].map(Double.init)
            let mean = part.reduce(0, +) / Double(size)
            let variance = part.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(size)
            for (j, v) in part.enumerated() {
                out.append(Float((v - mean) / (variance + eps).squareRoot()) * gamma(g, j) + beta(g, j))
            }
        }
        return out
    }

    @Test func layerNormalizationOverTrailingAxes() throws {
        let x = Harness.random([2, 3, 4], seed: 91, in: -2...2)
        let beta = Harness.random([1, 3, 4], seed: 92), gamma = Harness.random([1, 3, 4], seed: 93, in: 0.5...1.5)
        let f = LayerNormalization(batchAxis: [0], eps: 1e-5)
        let y = try Harness.forward1(f, [x, beta, gamma])
        let want = Self.normalized(x.toFloats(), groups: 2, eps: 1e-5, gamma: { gamma.floats[$1] }, beta: { beta.floats[$1] })
        #expect(mismatch(y.toFloats(), want, rtol: 1e-4, atol: 1e-5) == nil)
        for i in 0..<3 { try Self.expectGradient(f, [x, beta, gamma], index: i, seed: 94 + UInt64(i)) }
        // Two leading batch axes; without scale and bias.
        let g2 = LayerNormalization(batchAxis: [0, 1], noScale: true, noBias: true)
        let y2 = try Harness.forward1(g2, [x])
        #expect(mismatch(y2.toFloats(), Self.normalized(x.toFloats(), groups: 6, eps: 1e-5, gamma: { _, _ in 1 }, beta: { _, _ in 0 }),
                         rtol: 1e-4, atol: 1e-5) == nil)
        try Self.expectGradient(g2, [x], index: 0, seed: 97)
        #expect(throws: KilnError.self) { try LayerNormalization(batchAxis: [1]).outputTypes([TensorType([2, 3, 4]), TensorType([2, 1, 4]), TensorType([2, 1, 4])]) }
    }

    @Test func instanceNormalizationPerBatchAndChannel() throws {
        let x = Harness.random([2, 3, 5], seed: 101, in: -2...2)
        let beta = Harness.random([1, 3, 1], seed: 102), gamma = Harness.random([1, 3, 1], seed: 103, in: 0.5...1.5)
        let f = InstanceNormalization(eps: 1e-3)
        let y = try Harness.forward1(f, [x, beta, gamma])
        let want = Self.normalized(x.toFloats(), groups: 6, eps: 1e-3, gamma: { g, _ in gamma.floats[g % 3] }, beta: { g, _ in beta.floats[g % 3] })
        #expect(mismatch(y.toFloats(), want, rtol: 1e-4, atol: 1e-5) == nil)
        for i in 0..<3 { try Self.expectGradient(f, [x, beta, gamma], index: i, seed: 104 + UInt64(i)) }
    }

    @Test(arguments: [1, 2, 3, 5])
    func lrnMatchesTheDefinition(size: Int) throws {
        let x = Harness.random([2, 4, 3], seed: 111, in: -2...2)
        let f = LRN(size: size, alpha: 0.3, beta: 0.75, bias: 1.5)
        let y = try Harness.forward1(f, [x])
        var want: [Float] = []
        for b in 0..<2 { for c in 0..<4 { for i in 0..<3 {
            var s = 0.0
            for cc in Swift.max(0, c - (size - 1) / 2)...Swift.min(3, c + size / 2) {
                let v = Double(x.floats[(b * 4 + cc) * 3 + i]); s += v * v
            }
            want.append(Float(Double(x.floats[(b * 4 + c) * 3 + i]) / Foundation.pow(1.5 + 0.3 / Double(size) * s, 0.75)))
        } } }
        #expect(mismatch(y.toFloats(), want, rtol: 1e-5, atol: 1e-6) == nil)
        try Self.expectGradient(f, [x], index: 0, seed: 112)
    }

    @Test func everyNewFunctionRoundTripsThroughItsGraphFileArguments() throws {
        let fs: [any Function] = [Exp(), SoftPlus(beta: 2), SELU(scale: 1.5, alpha: 0.5), MaximumScalar(val: 3), Pow2(), Maximum2(),
                                  PReLU(baseAxis: 2), Max(axes: [1], keepDims: true), Pad(padWidth: [1, 2], mode: .reflect, constantValue: 0),
                                  Gather(axis: 1), BatchMatmul(transposeA: true), LayerNormalization(batchAxis: [0, 1], eps: 1e-3),
                                  InstanceNormalization(eps: 1e-4), LRN(size: 3, alpha: 0.1, beta: 0.5, bias: 2), HardSwish()]
        for f in fs {
            let again = try FunctionRegistry.make(type: f.typeName, arguments: Dictionary(f.arguments, uniquingKeysWith: { a, _ in a }))
            #expect(again.arguments.map { "\($0.0)=\($0.1)" } == f.arguments.map { "\($0.0)=\($0.1)" }, "\(f.typeName)")
        }
        #expect(throws: KilnError.self) { _ = try FunctionRegistry.make(type: "Pad", arguments: ["pad_width": .ints([1]), "mode": .string("wrap")]) }
        #expect(throws: KilnError.self) { _ = try FunctionRegistry.make(type: "Max", arguments: ["with_index": .bool(true)]) }
    }
}
