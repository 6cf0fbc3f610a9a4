import Foundation
import Testing
@testable import Kiln

/// The fixed-point converters' options beyond the golden cases: power-of-two steps, floor, quantize flags,
/// shared weights, black lists and other activation types.
struct FixedPointConverterTests {
    func quantizers(_ roots: [Variable]) -> [(input: String, q: FixedPointQuantize)] {
        GraphCollector.nodes(from: roots).compactMap { n in
            (n.function as? FixedPointQuantize).map { (n.inputs[0].name, $0) }
        }
    }

    /// max|W| = 0.3 with 7 magnitude bits: 0.3 / 127 = 2^-8.7, so the step is 2^-8 (ceil) or 2^-9 (floor).
    @Test func powerOfTwoStepsFollowTheLargestMagnitude() throws {
        var net = ConverterTestNetwork(seed: 3)
        let x = try net.input([2, 4])
        let w = try net.parameter("fc/W", [4, 3], -0.2...0.2)
        var values = w.d
        values[5] = -0.3
        try w.setData(values)
        let zeroBias = try net.parameter("fc/b", [3], 0...0)
        let y = try F.affine(x, w, zeroBias)
        let ceil = try FixedPointWeightConverter(argsFpq: .init(deltaW: .powerOfTwo, deltaB: .powerOfTwo)).convert([y])
        #expect(quantizers(ceil.outputs).map(\.q.delta) == [1.0 / 256])
        #expect(ceil.notes.count == 1 && ceil.notes[0].contains("all zeros"), "\(ceil.notes)")
        let floor = try FixedPointWeightConverter(floor: true, argsFpq: .init(deltaW: .powerOfTwo)).convert([y])
        #expect(quantizers(floor.outputs).map(\.q.delta) == [1.0 / 512, 2e-4])
        // Unsigned: 8 magnitude bits, 0.3 / 255 = 2^-9.7 -> 2^-9.
        let unsigned = try FixedPointWeightConverter(argsFpq: .init(signW: false, deltaW: .powerOfTwo, quantizeB: false)).convert([y])
        #expect(quantizers(unsigned.outputs).map(\.q.delta) == [1.0 / 512])
    }

    @Test func quantizeFlagsBlackListAndSharedWeights() throws {
        var net = ConverterTestNetwork(seed: 4)
        let x = try net.input([2, 3, 4, 4])
        let h = try F.convolution(x, try net.parameter("conv/W", [2, 3, 3, 3]), try net.parameter("conv/b", [2]))
        let shared = try net.parameter("fc/W", [8, 2])
        let y = try F.add2(try F.affine(h, shared), try F.affine(h, shared))
        let all = try FixedPointWeightConverter().convert([y])
        #expect(quantizers(all.outputs).map(\.input).sorted() == ["conv/W", "conv/b", "fc/W"], "a shared weight is quantized once")
        let weightsOnly = try FixedPointWeightConverter(argsFpq: .init(quantizeB: false)).convert([y])
        #expect(quantizers(weightsOnly.outputs).map(\.input).sorted() == ["conv/W", "fc/W"])
        let noAffine = try FixedPointWeightConverter(blackList: ["Affine"]).convert([y])
        #expect(quantizers(noAffine.outputs).map(\.input).sorted() == ["conv/W", "conv/b"])
        let q = try #require(quantizers(all.outputs).first?.q)
        #expect(q.sign && q.n == 8 && q.delta == 2e-4 && q.steFineGrained)
        // Quantized weights are values the graph computes, named as nnabla's fixed-point affine names them.
        #expect(ConverterTestNetwork.variable("fixed-point-weight-graph/fc/fp_quantized_affine/W_q", in: all.outputs)?.parent != nil)
        // nnabla's defaults: the quantized network differs from the float one only by the quantization.
        let yq = try ConverterTestNetwork.evaluate(all.outputs)[0]
        #expect(yq.count == y.size && yq.allSatisfy(\.isFinite))
    }

    @Test func otherActivationTypesAndSignedActivations() throws {
        var net = ConverterTestNetwork(seed: 5)
        let x = try net.input([2, 6])
        let y = try F.sigmoid(try F.relu(x))
        let r = try FixedPointActivationConverter(activationFunctions: ["ReLU", "Sigmoid"], argsFpq: .init(sign: true, n: 4, delta: 0.25)).convert([y])
        #expect(ConverterTestNetwork.types(r.outputs) == ["FixedPointQuantize", "FixedPointQuantize"])
        let v = try ConverterTestNetwork.evaluate(r.outputs)[0]
        let expected = x.d.map { v -> Float in
            func q(_ a: Float) -> Float { min(max((abs(a) / 0.25 + 0.5).rounded(.down) * 0.25 * (a < 0 ? -1 : 1), -1.75), 1.75) }
            return q(q(v))
        }
        #expect(v == expected)
        let black = try FixedPointActivationConverter(blackList: ["ReLU"]).convert([y])
        #expect(ConverterTestNetwork.types(black.outputs) == ["ReLU", "Sigmoid"])
    }

    @Test func invalidQuantizerSettingsAreErrorsNamingTheFunction() throws {
        var net = ConverterTestNetwork(seed: 6)
        let x = try net.input([2, 4])
        let y = try F.relu(try F.affine(x, try net.parameter("fc/W", [4, 3])))
        do {
            _ = try FixedPointWeightConverter(argsFpq: .init(nW: 1)).convert([y])
            Issue.record("n_w = 1 signed was accepted")
        } catch let e as KilnError {
            #expect("\(e)".contains("FixedPointQuantize") && "\(e)".contains("fc/fp_quantized_affine/W_q"), "\(e)")
        }
        #expect(throws: KilnError.self) { try FixedPointActivationConverter(argsFpq: .init(delta: 0)).convert([y]) }
    }

    /// quantize=false must not turn an activation into the identity: a FixedPointQuantize with quantize=false
    /// passes x through unchanged, so replacing a ReLU with it would drop the nonlinearity. Like the weight
    /// converter's quantizeW/quantizeB, false leaves the activation as it is.
    @Test func activationsAreKeptWhenQuantizeIsOff() throws {
        var net = ConverterTestNetwork(seed: 7)
        let x = try net.input([2, 6])
        let y = try F.relu(x)
        let r = try FixedPointActivationConverter(argsFpq: .init(quantize: false)).convert([y])
        #expect(ConverterTestNetwork.types(r.outputs) == ["ReLU"])
        #expect(try ConverterTestNetwork.evaluate(r.outputs)[0] == x.d.map { max($0, 0) })
    }

    /// A power-of-two step too small for float32 (tiny weights) is not a conversion error: the weight stays
    /// unquantized with a note, like an all-zero one.
    @Test func powerOfTwoStepsOutsideFloat32LeaveTheWeightWithANote() throws {
        var net = ConverterTestNetwork(seed: 8)
        let x = try net.input([2, 4])
        let tiny = Float(bitPattern: 7)                         // 1e-44 rounded to float32: 7 x 2^-149
        let w = try net.parameter("fc/W", [4, 3], tiny...tiny)
        let y = try F.affine(x, w)
        let r = try FixedPointWeightConverter(argsFpq: .init(deltaW: .powerOfTwo)).convert([y])
        #expect(quantizers(r.outputs).isEmpty)
        #expect(r.notes.count == 1 && r.notes[0].contains("fc/W") && r.notes[0].contains("float32"), "\(r.notes)")
    }
}
