import CKilnKernels
import Testing
@testable import Kiln
@testable import KilnGraph

/// The Quantization pass: fixed-point-quantized layers run as integer products and quantizers' outputs are held
/// as 8-bit codes, with exactly the float fake-quantization plan's outputs (every sum here stays below 2^24
/// steps, where float32 sums are exact), on every integer path the CPU has; and the layers it must leave in
/// float32, with the plan's note saying why.
@Suite(.serialized)
struct QuantizedPlanTests {
    static func fill(_ v: Variable, _ rng: inout SplitMix64, _ range: ClosedRange<Float>) throws {
        try v.setData((0..<v.shape.reduce(1, *)).map { _ in Float.random(in: range, using: &rng) })
    }

    static func quantized(_ v: Variable, sign: Bool, n: Int = 8, delta: Double) throws -> Variable {
        try F.fixedPointQuantize(v, sign: sign, n: n, delta: delta)
    }

    /// A small network of the patterns the pass knows: quantized input; convolution + BN + residual Add2 (the
    /// quantized input) + ReLU + quantizer; a strided grouped convolution whose quantizer feeds a MaxPooling; an
    /// affine + ReLU + quantizer; a last affine with float output. Signed activations after the first layer.
    static func network(batch: Int, seed: UInt64, signedHidden: Bool = false) throws -> (input: Variable, output: Variable) {
        var rng = SplitMix64(seed: seed)
        let x = try Variable(shape: [batch, 4, 10, 10])
        try fill(x, &rng, -0.5...3)
        func weight(_ shape: [Int], _ delta: Double) throws -> Variable {
            let w = try Variable(shape: shape, needGrad: true)
            try fill(w, &rng, -1...1)
            return try quantized(w, sign: true, delta: delta)
        }
        let xq = try quantized(x, sign: false, delta: 1.0 / 64)
        let b1 = try Variable(shape: [4], needGrad: true)
        try fill(b1, &rng, -0.5...0.5)
        var h = try F.convolution(xq, weight([4, 4, 3, 3], 1.0 / 128), b1, pad: [1, 1])
        let gamma = try Variable(shape: [1, 4, 1, 1]), beta = try Variable(shape: [1, 4, 1, 1])
        let mean = try Variable(shape: [1, 4, 1, 1]), variance = try Variable(shape: [1, 4, 1, 1])
        try fill(gamma, &rng, 0.5...2); try fill(beta, &rng, -1...1); try fill(mean, &rng, -1...1)
        try fill(variance, &rng, 0.5...2)
        h = try F.batchNormalization(h, beta, gamma, mean, variance, batchStat: false)
        h = try F.relu(F.add2(h, xq))
        h = try quantized(h, sign: signedHidden, delta: 1.0 / 32)
        h = try F.convolution(h, weight([6, 2, 3, 3], 1.0 / 64), nil, pad: [1, 1], stride: [2, 2], group: 2)
        h = try quantized(h, sign: true, delta: 1.0 / 16)
        h = try F.maxPooling(h, kernel: [2, 2])
        let b3 = try Variable(shape: [10], needGrad: true)
        try fill(b3, &rng, -0.5...0.5)
        h = try F.relu(F.affine(h, weight([6 * 2 * 2, 10], 1.0 / 64), b3))
        h = try quantized(h, sign: false, delta: 1.0 / 16)
        let out = try F.affine(h, weight([10, 3], 1.0 / 32))
        return (x, out)
    }

    static func run(_ root: Variable, integerKernels: Bool, threads: Int = 1) throws -> (Plan, [Float]) {
        var options = CompileOptions()
        options.integerKernels = integerKernels
        let exe = try Compiler.compile([root], .inference, options: options, context: Context(threads: threads))
        try exe.plan.verify()
        try exe.run()
        return (exe.plan, root.d)
    }

    @Test(arguments: [false, true])
    func integerPlanEqualsTheFloatPlan(signedHidden: Bool) throws {
        let paths: [String] = ["generic", "avx2", "avx-vnni", "avx512-vnni", "avx-vnni-layout", "avx512-vnni-layout"]
        try Parameters.isolated {
            let (_, out) = try Self.network(batch: 3, seed: 9, signedHidden: signedHidden)
            let (floatPlan, want) = try Self.run(out, integerKernels: false)
            #expect(!floatPlan.steps.contains { $0.function.hasPrefix("Quantized") })
            for path in paths where kiln_q8_path_available(path) != 0 {
                #expect(kiln_q8_force_path(path) == 1)
                defer { kiln_q8_force_path(nil) }
                for threads in [1, 2] {
                    let (plan, got) = try Self.run(out, integerKernels: true, threads: threads)
                    #expect(got == want, "\(path), \(threads) threads")
                    let names = plan.steps.map(\.function)
                    #expect(names.contains("QuantizedConvolution+BatchNormalization+Add2+ReLU+FixedPointQuantize"))
                    #expect(names.contains("QuantizedConvolution+FixedPointQuantize"))
                    #expect(names.contains("QuantizedAffine+ReLU+FixedPointQuantize"))
                    #expect(names.contains("QuantizedAffine"))
                    // Each layer quantizes its own weight: the only quantizer left as a step is the input's.
                    #expect(names.filter { $0 == "FixedPointQuantize" }.count == 1, "\(names)")
                    // Codes everywhere between integer steps: the input quantizer's (read by the first convolution
                    // and its residual), the first and strided convolutions' quantizers, the MaxPooling's (which
                    // pools codes) and the affine's quantizer (read by the last affine).
                    let coded = plan.buffers.filter { $0.codes != nil }
                    #expect(coded.count == 5, "\(coded.map(\.name))")
                    #expect(plan.steps.contains { $0.function == "MaxPooling" && plan.buffers[$0.inputs[0]].codes != nil
                                                  && plan.buffers[$0.outputs[0]].codes != nil })
                    #expect(plan.notes.isEmpty, "\(plan.notes)")
                    #expect(plan.dump().contains(" as u8*2^-6 "))
                    #expect(plan.arenaBytes < floatPlan.arenaBytes)
                }
            }
        }
    }

    /// Quantizers narrower than 8 bits clip at their own largest code, inside a layer's epilogue too (n = 4:
    /// codes to 7 signed, 15 unsigned).
    @Test(arguments: [false, true])
    func narrowQuantizersClipAtTheirOwnRange(signed: Bool) throws {
        try Parameters.isolated {
            var rng = SplitMix64(seed: 21)
            let x = try Variable(shape: [2, 3, 6, 6])
            try Self.fill(x, &rng, -2...4)
            let w = try Variable(shape: [5, 3, 3, 3], needGrad: true)
            try Self.fill(w, &rng, -1...1)
            let h = try F.convolution(Self.quantized(x, sign: false, delta: 1.0 / 16), Self.quantized(w, sign: true, delta: 1.0 / 32),
                                      nil, pad: [1, 1])
            let y = try F.mulScalar(Self.quantized(h, sign: signed, n: 4, delta: 1.0 / 4), val: 1)
            let (_, want) = try Self.run(y, integerKernels: false)
            let (plan, got) = try Self.run(y, integerKernels: true)
            #expect(plan.steps.contains { $0.function == "QuantizedConvolution+FixedPointQuantize" })
            #expect(got == want)
            let top: Float = signed ? 7 * 0.25 : 15 * 0.25
            #expect(want.max() == top, "the data reach the clip")
        }
    }

    /// A value held as codes reads back through the variable as the floats it stands for.
    @Test func codedValuesReadBackAsFloats() throws {
        try Parameters.isolated {
            let x = try Variable(shape: [2, 3, 5, 5])
            var rng = SplitMix64(seed: 3)
            try Self.fill(x, &rng, 0...4)
            let xq = try Self.quantized(x, sign: false, delta: 1.0 / 32)
            let w = try Variable(shape: [2, 3, 3, 3], needGrad: true)
            try Self.fill(w, &rng, -1...1)
            let y = try F.convolution(xq, Self.quantized(w, sign: true, delta: 1.0 / 64), nil)
            let (plan, _) = try Self.run(y, integerKernels: true)
            #expect(plan.buffers.contains { $0.codes != nil })
            let want = x.d.map { FixedPointQuantize.Forward(mx: 255.0 / 32, mn: 0, d: 1.0 / 32)($0) }
            #expect(xq.d == want)
        }
    }

    /// A quantizer's codes read by a convolution and by a MaxPooling whose own reader takes floats: the pooling
    /// reads codes and writes the floats they stand for.
    @Test func poolingOfCodesForAFloatReader() throws {
        try Parameters.isolated {
            var rng = SplitMix64(seed: 12)
            let x = try Variable(shape: [2, 3, 8, 8])
            try Self.fill(x, &rng, -1...3)
            let xq = try Self.quantized(x, sign: true, delta: 1.0 / 32)
            let w = try Variable(shape: [2, 3, 3, 3], needGrad: true)
            try Self.fill(w, &rng, -1...1)
            let conv = try F.convolution(xq, Self.quantized(w, sign: true, delta: 1.0 / 64), nil)
            let pooled = try F.tanh(F.maxPooling(xq, kernel: [3, 3], stride: [2, 2], ignoreBorder: false))
            let y = try F.add2(F.sum(conv, axes: [1, 2, 3]), F.sum(pooled, axes: [1, 2, 3]))
            let (plan, got) = try Self.run(y, integerKernels: true)
            let (_, want) = try Self.run(y, integerKernels: false)
            #expect(got == want)
            let pool = try #require(plan.steps.first { $0.function == "MaxPooling" })
            #expect(plan.buffers[pool.inputs[0]].codes != nil && plan.buffers[pool.outputs[0]].codes == nil)
        }
    }

    @Test func layersThatCannotBeQuantizedStayFloatWithANote() throws {
        try Parameters.isolated {
            var rng = SplitMix64(seed: 4)
            let x = try Variable(shape: [2, 3, 6, 6])
            try Self.fill(x, &rng, 0...1)
            let w = try Variable(shape: [2, 3, 3, 3], needGrad: true)
            try Self.fill(w, &rng, -1...1)
            let wq = try Self.quantized(w, sign: true, delta: 1.0 / 64)
            // No quantizer on the input; 10 bits; a delta that is not a power of two.
            let cases: [(Variable, String)] = [
                (x, "its input is not quantized"),
                (try Self.quantized(x, sign: false, n: 10, delta: 1.0 / 64), "n=10 bits"),
                (try Self.quantized(x, sign: false, delta: 0.01), "is not a power of two"),
            ]
            for (input, reason) in cases {
                let y = try F.convolution(input, wq, nil)
                let (plan, got) = try Self.run(y, integerKernels: true)
                let (_, want) = try Self.run(y, integerKernels: false)
                #expect(got == want)
                #expect(!plan.steps.contains { $0.function.hasPrefix("Quantized") })
                #expect(plan.notes.count == 1 && plan.notes[0].contains(reason), "\(plan.notes)")
                #expect(plan.dump().contains("note: Convolution"))
            }
        }
    }
}
