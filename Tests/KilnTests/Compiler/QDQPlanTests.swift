import CKilnKernels
import Testing
@testable import Kiln
@testable import KilnGraph

/// The Quantization pass on QDQ graphs (nnabla's QuantizeLinear/DequantizeLinear, as ONNX QDQ models import):
/// zero points, per-channel weight scales, int8 and uint8 codes, rounding half to even. With power-of-two scales
/// every sum is exact and the integer plan equals the float plan bit for bit; with other scales each output code
/// is within one step of the float plan's. Scales are compiled in and checked on every run.
@Suite(.serialized)
struct QDQPlanTests {
    static let paths: [String] = ["generic", "avx2", "avx-vnni", "avx512-vnni", "avx-vnni-layout", "avx512-vnni-layout"]
        .filter { kiln_q8_path_available($0) != 0 }

    static func constant(_ values: [Float], _ shape: [Int]) throws -> Variable {
        let v = try Variable(shape: shape)
        try v.setData(values)
        return v
    }

    /// A QDQ pair on `v` with one scale and zero point.
    static func qdq(_ v: Variable, scale: Float, zero: Float, signed: Bool) throws -> Variable {
        let ones = [Int](repeating: 1, count: v.shape.count)
        let s = try constant([scale], ones), z = try constant([zero], ones)
        let q = try F.quantizeLinear(v, scale: s, zeroPoint: z, roundMode: "HALF_TO_EVEN", dtype: signed ? 1 : 2)
        return try F.dequantizeLinear(q, scale: s, zeroPoint: z)
    }

    /// A weight as the DequantizeLinear of random int8 codes in [-127, 127], a scale per output when `scales`
    /// has several (convolution: axis 0; affine: the last axis).
    static func weight(_ shape: [Int], scales: [Float], affine: Bool, _ rng: inout SplitMix64) throws -> Variable {
        let count = shape.reduce(1, *)
        let codes = try constant((0..<count).map { _ in Float(Int(rng.next() % 255) - 127) }, shape)
        var scaleShape = [Int](repeating: 1, count: shape.count)
        if scales.count > 1 { scaleShape[affine ? shape.count - 1 : 0] = scales.count }
        return try F.dequantizeLinear(codes, scale: try constant(scales, scaleShape),
                                      zeroPoint: try constant([Float](repeating: 0, count: scales.count), scaleShape))
    }

    /// A network of the patterns: QDQ input with a zero point; convolution (per-map weight scales) + BN +
    /// residual + ReLU + QDQ; strided grouped convolution + signed QDQ with a negative zero point; MaxPooling;
    /// affine (per-output scales) + ReLU + QDQ; a last affine with float output. `pow2` picks power-of-two scales.
    static func network(pow2: Bool, seed: UInt64 = 3) throws -> (input: Variable, output: Variable, scales: [Variable]) {
        var rng = SplitMix64(seed: seed)
        func scale(_ p: Float, _ other: Float) -> Float { pow2 ? p : other }
        let x = try Variable(shape: [3, 4, 10, 10])
        try x.setData((0..<1200).map { _ in Float.random(in: -0.5...3, using: &rng) })
        let xq = try qdq(x, scale: scale(1.0 / 64, 0.0137), zero: 37, signed: false)
        let b1 = try constant((0..<4).map { _ in Float.random(in: -0.5...0.5, using: &rng) }, [4])
        var h = try F.convolution(xq, weight([4, 4, 3, 3], scales: pow2 ? [1.0 / 256, 1.0 / 512, 1.0 / 128, 1.0 / 256] : [0.0031, 0.0047, 0.0023, 0.0039],
                                             affine: false, &rng), b1, pad: [1, 1])
        let gamma = try constant([1.5, 0.75, 1, 2], [1, 4, 1, 1]), beta = try constant([0.25, -0.5, 0, 0.125], [1, 4, 1, 1])
        let mean = try constant([0.5, -0.25, 0, 1], [1, 4, 1, 1]), variance = try constant([1, 4, 0.25, 1], [1, 4, 1, 1])
        h = try F.batchNormalization(h, beta, gamma, mean, variance, batchStat: false)
        h = try F.relu(F.add2(h, xq))
        h = try qdq(h, scale: scale(1.0 / 32, 0.029), zero: 0, signed: false)
        h = try F.convolution(h, weight([6, 2, 3, 3], scales: [scale(1.0 / 256, 0.0041)], affine: false, &rng), nil,
                              pad: [1, 1], stride: [2, 2], group: 2)
        h = try qdq(h, scale: scale(1.0 / 8, 0.11), zero: -5, signed: true)
        h = try F.maxPooling(h, kernel: [2, 2])
        let b3 = try constant((0..<10).map { _ in Float.random(in: -0.5...0.5, using: &rng) }, [10])
        h = try F.relu(F.affine(h, weight([24, 10], scales: (0..<10).map { pow2 ? Float(1 << ($0 % 3)) / 1024 : 0.002 + Float($0) * 0.0003 },
                                          affine: true, &rng), b3))
        h = try qdq(h, scale: scale(1.0 / 4, 0.23), zero: 3, signed: false)
        let out = try F.affine(h, weight([10, 3], scales: [scale(1.0 / 128, 0.0071)], affine: true, &rng))
        // The scales' leaves, for the test that changes one.
        let scales = [xq.parent?.inputs[1]].compactMap { $0 }
        return (x, out, scales)
    }

    static func run(_ root: Variable, integerKernels: Bool, threads: Int = 1) throws -> (Plan, [Float]) {
        try QuantizedPlanTests.run(root, integerKernels: integerKernels, threads: threads)
    }

    @Test func powerOfTwoScalesGiveTheFloatPlanExactly() throws {
        let (_, out, _) = try Self.network(pow2: true)
        let (floatPlan, want) = try Self.run(out, integerKernels: false)
        #expect(!floatPlan.steps.contains { $0.function.hasPrefix("Quantized") })
        for path in Self.paths {
            #expect(kiln_q8_force_path(path) == 1)
            defer { kiln_q8_force_path(nil) }
            for threads in [1, 2] {
                let (plan, got) = try Self.run(out, integerKernels: true, threads: threads)
                #expect(got == want, "\(path), \(threads) threads")
                let names = plan.steps.map(\.function)
                #expect(names.contains("QuantizedConvolution+BatchNormalization+Add2+ReLU+QuantizeLinear+DequantizeLinear"), "\(names)")
                #expect(names.contains("QuantizedConvolution+QuantizeLinear+DequantizeLinear"))
                #expect(names.contains("QuantizedAffine+ReLU+QuantizeLinear+DequantizeLinear"))
                #expect(names.contains("QuantizedAffine"))
                #expect(names.contains("QuantizeLinear+DequantizeLinear"), "the input's pair writes codes")
                #expect(!names.contains("DequantizeLinear"), "every weight's DequantizeLinear is absorbed")
                let dump = plan.dump()
                #expect(dump.contains("as s8*2^-3+5"), "signed codes with zero point -5:\n\(dump)")
                #expect(dump.contains("as u8*2^-6-37"), "the input's codes with zero point 37")
            }
        }
    }

    /// Other scales: each layer's sums are exact integers scaled once, where the float plan rounds every product
    /// and sum, so a code may differ by one step where a value falls near a rounding boundary. One layer of each
    /// kind: every output within one step of the float plan's, nearly all equal; the whole network's outputs
    /// within what one step of the last grid moves them.
    @Test func otherScalesStayWithinAStep() throws {
        var rng = SplitMix64(seed: 11)
        let x = try Variable(shape: [4, 8, 12, 12])
        try x.setData((0..<(4 * 8 * 144)).map { _ in Float.random(in: -0.5...3, using: &rng) })
        let xq = try Self.qdq(x, scale: 0.0137, zero: 37, signed: false)
        let conv = try F.convolution(xq, Self.weight([16, 8, 3, 3], scales: (0..<16).map { 0.002 + Float($0) * 0.0001 }, affine: false, &rng),
                                     nil, pad: [1, 1])
        let layers = [
            (try Self.qdq(F.relu(conv), scale: 0.029, zero: 0, signed: false), Float(0.029)),
            (try Self.qdq(F.affine(xq, Self.weight([8 * 144, 20], scales: [0.0004], affine: true, &rng)), scale: 0.11, zero: -5, signed: true), Float(0.11)),
        ]
        let (_, out, _) = try Self.network(pow2: false)
        for path in Self.paths {
            #expect(kiln_q8_force_path(path) == 1)
            defer { kiln_q8_force_path(nil) }
            for (y, step) in layers {
                let (_, want) = try Self.run(y, integerKernels: false)
                let (plan, got) = try Self.run(y, integerKernels: true)
                #expect(plan.steps.contains { $0.function.hasPrefix("Quantized") })
                let worst = zip(got, want).map { abs($0 - $1) }.max() ?? 0
                let equal = zip(got, want).filter { $0 == $1 }.count
                #expect(worst <= step * 1.0001, "\(path): largest difference \(worst), step \(step)")
                #expect(equal * 100 >= got.count * 98, "\(path): \(equal) of \(got.count) equal")
            }
            let (_, want) = try Self.run(out, integerKernels: false)
            let (plan, got) = try Self.run(out, integerKernels: true)
            #expect(plan.steps.filter { $0.function.hasPrefix("Quantized") }.count == 4)
            // One step (0.23) of the last grid through the last layer's weights: at most 10 codes * 127 * 0.0071.
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 0.23 * 127 * 0.0071 * 10, "\(path): largest difference \(worst)")
        }
    }

    /// A QDQ model's residual block (as onnxruntime's quantizer writes it): the second convolution's QDQ value plus
    /// the block's input, a ReLU, a QDQ pair, all in that convolution's step; the sum's codes take the input's memory.
    /// Power-of-two scales: exactly the float plan; others: within one step of the last grid.
    @Test(arguments: [true, false])
    func residualBlocksRunInOneStep(pow2: Bool) throws {
        var rng = SplitMix64(seed: 17)
        let x = try Variable(shape: [2, 8, 9, 9])
        try x.setData((0..<(2 * 8 * 81)).map { _ in Float.random(in: -1...4, using: &rng) })
        let xq = try Self.qdq(x, scale: pow2 ? 1.0 / 32 : 0.031, zero: 20, signed: false)
        let first = try Self.qdq(F.convolution(xq, Self.weight([8, 8, 3, 3], scales: [pow2 ? 1.0 / 512 : 0.0023], affine: false, &rng),
                                               nil, pad: [1, 1]), scale: pow2 ? 1.0 / 8 : 0.11, zero: 0, signed: false)
        let conv = try F.convolution(first, Self.weight([8, 8, 3, 3], scales: [pow2 ? 1.0 / 512 : 0.0021], affine: false, &rng), nil, pad: [1, 1])
        let branch = try Self.qdq(conv, scale: pow2 ? 1.0 / 16 : 0.057, zero: -3, signed: true)
        let step: Float = pow2 ? 1.0 / 16 : 0.047
        let sum = try Self.qdq(F.relu(F.add2(branch, xq)), scale: step, zero: 0, signed: false)
        let y = try F.convolution(sum, Self.weight([4, 8, 1, 1], scales: [pow2 ? 1.0 / 256 : 0.0037], affine: false, &rng), nil)
        for path in Self.paths {
            #expect(kiln_q8_force_path(path) == 1)
            defer { kiln_q8_force_path(nil) }
            let (_, want) = try Self.run(sum, integerKernels: false)
            let (sumPlan, got) = try Self.run(sum, integerKernels: true)
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? 0
            #expect(pow2 ? got == want : worst <= step * 1.0001, "\(path): largest difference \(worst)")
            #expect(sumPlan.steps.contains {
                $0.function == "QuantizedConvolution+QuantizeLinear+DequantizeLinear+Add2+ReLU+QuantizeLinear+DequantizeLinear"
            }, "\(sumPlan.steps.map(\.function))")
            let (plan, _) = try Self.run(y, integerKernels: true)
            // Codes between the integer steps: the input's, the first convolution's, the sum's in the input's place.
            #expect(plan.buffers.filter { $0.codes != nil }.count == 3, "\(plan.dump())")
            #expect(plan.dump().contains("in place of"), "the sum takes the block input's memory")
            #expect(!plan.steps.contains { $0.function == "Add2" || $0.function == "QuantizeLinear" })
        }
    }

    /// A block with a projection shortcut, as ResNets change stages: whichever convolution the schedule runs
    /// later takes the sum (the value it adds must already exist; `Plan.verify` checks every value is written
    /// before it is read), and the values stay the float plan's (power-of-two scales).
    @Test func projectionShortcutBlocks() throws {
        var rng = SplitMix64(seed: 23)
        let x = try Variable(shape: [2, 4, 8, 8])
        try x.setData((0..<512).map { _ in Float.random(in: -1...4, using: &rng) })
        let xq = try Self.qdq(x, scale: 1.0 / 32, zero: 20, signed: false)
        let h = try Self.qdq(F.convolution(xq, Self.weight([8, 4, 3, 3], scales: [1.0 / 256], affine: false, &rng), nil,
                                           pad: [1, 1], stride: [2, 2]), scale: 1.0 / 8, zero: 0, signed: false)
        let main = try Self.qdq(F.convolution(h, Self.weight([8, 8, 3, 3], scales: [1.0 / 512], affine: false, &rng), nil, pad: [1, 1]),
                                scale: 1.0 / 16, zero: -3, signed: true)
        let shortcut = try Self.qdq(F.convolution(xq, Self.weight([8, 4, 1, 1], scales: [1.0 / 128], affine: false, &rng), nil,
                                                  stride: [2, 2]), scale: 1.0 / 16, zero: 7, signed: true)
        for (a, b) in [(main, shortcut), (shortcut, main)] {
            let sum = try Self.qdq(F.relu(F.add2(a, b)), scale: 1.0 / 16, zero: 0, signed: false)
            let (_, want) = try Self.run(sum, integerKernels: false)
            let (plan, got) = try Self.run(sum, integerKernels: true)
            #expect(got == want)
            #expect(plan.steps.filter { $0.function.contains("Add2") }.count == 1)
            #expect(!plan.steps.contains { $0.function == "Add2" }, "\(plan.steps.map(\.function))")
        }
    }

    /// A sum of two QDQ values that no integer step made (two inputs' pairs): one step on codes, with the float
    /// steps' arithmetic, so exactly the float plan's values whatever the scales.
    @Test(arguments: [true, false])
    func sumsOfPairsRunOnCodes(pow2: Bool) throws {
        var rng = SplitMix64(seed: 19)
        let a = try Variable(shape: [2, 4, 7, 7]), b = try Variable(shape: [2, 4, 7, 7])
        try a.setData((0..<392).map { _ in Float.random(in: -1...4, using: &rng) })
        try b.setData((0..<392).map { _ in Float.random(in: -3...2, using: &rng) })
        let sum = try F.add2(Self.qdq(a, scale: pow2 ? 1.0 / 32 : 0.031, zero: 20, signed: false),
                             Self.qdq(b, scale: pow2 ? 1.0 / 64 : 0.029, zero: 5, signed: true))
        let q = try Self.qdq(F.relu(sum), scale: pow2 ? 1.0 / 16 : 0.047, zero: 0, signed: false)
        let y = try F.convolution(q, Self.weight([3, 4, 3, 3], scales: [pow2 ? 1.0 / 256 : 0.0037], affine: false, &rng), nil)
        for path in Self.paths {
            #expect(kiln_q8_force_path(path) == 1)
            defer { kiln_q8_force_path(nil) }
            let (_, want) = try Self.run(q, integerKernels: false)
            let (plan, got) = try Self.run(q, integerKernels: true)
            #expect(got == want, "\(path)")
            #expect(plan.steps.contains { $0.function == "Add2+ReLU+QuantizeLinear+DequantizeLinear" }, "\(plan.steps.map(\.function))")
            let (yPlan, _) = try Self.run(y, integerKernels: true)
            #expect(yPlan.buffers.filter { $0.codes != nil }.count == 3, "both pairs and the sum as codes:\n\(yPlan.dump())")
        }
    }

    @Test func aChangedScaleStopsTheRun() throws {
        let (_, out, scales) = try Self.network(pow2: false)
        let exe = try Compiler.compile([out], .inference, options: CompileOptions())
        try exe.run()
        let scale = try #require(scales.first)
        try scale.setData([0.02])
        #expect {
            try exe.run()
        } throws: { "\($0)".contains("changed since the plan was compiled") }
    }

    /// Where the pass cannot use integers, the plan stays float and says why.
    @Test func ineligiblePatternsAreNoted() throws {
        var rng = SplitMix64(seed: 1)
        let x = try Variable(shape: [2, 3, 6, 6])
        try x.setData((0..<216).map { _ in Float.random(in: 0...1, using: &rng) })
        let xq = try Self.qdq(x, scale: 0.01, zero: 0, signed: false)
        // A zero point that is not an integer: QuantizeLinear rounds it, DequantizeLinear does not.
        let ones = [1, 1, 1, 1]
        let s = try Self.constant([0.05], ones), z = try Self.constant([2.5], ones)
        let odd = try F.dequantizeLinear(F.quantizeLinear(x, scale: s, zeroPoint: z, dtype: 2), scale: s, zeroPoint: z)
        let w = try Self.weight([2, 3, 3, 3], scales: [0.01], affine: false, &rng)
        let w2 = try Self.weight([2, 3, 3, 3], scales: [0.01], affine: false, &rng)
        let y = try F.add2(F.convolution(xq, w, nil), F.convolution(odd, w2, nil))
        let (plan, got) = try Self.run(y, integerKernels: true)
        let (_, want) = try Self.run(y, integerKernels: false)
        #expect(plan.notes.contains { $0.contains("zero point 2.5") }, "\(plan.notes)")
        #expect(plan.steps.filter { $0.function.hasPrefix("QuantizedConvolution") }.count == 1)
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-3 * max(1, abs($1)) })
    }
}
