import Foundation
import Testing
@testable import Kiln

/// nnabla's converter results (`graph_converters.json`) on conv -> BN -> ReLU -> affine -> BN, reproduced by
/// converting the network's graph file, writing the result as `kiln convert` does and running it as
/// `kiln run` does. The file holds the network with biases; the network without biases is checked against
/// expectations derived from the same numbers (folding and BN coefficients do not involve the bias).
///
/// Tolerances (golden README): outputs through affine/conv/BN rtol 1e-4, atol 1e-5; folded parameters and
/// coefficients are element-wise float32 arithmetic in nnabla's order, rtol 1e-6; quantized parameters are
/// exact.
///
/// Serialized: the converters register their new parameters in the shared registry under nnabla's names
/// (`bn-linear/c0-bn-linear-0`), so two cases running at once could take each other's names (seen once: a
/// coefficient missing under its expected name).
@Suite(.serialized)
struct ConverterGoldenTests {
    static let outputTolerance: (rtol: Float, atol: Float) = (1e-4, 1e-5)

    struct Network {
        let c: JSON
        let source: GraphFile
        let x: Golden.TensorCase
    }

    static func network(withBias: Bool = true) throws -> Network {
        let c = try ConverterFixtures.goldenCase()
        let source = try GraphFile.load(json: try ConverterFixtures.graph(c, withBias: withBias))
        return Network(c: c, source: source, x: try ConverterFixtures.tensor(c["input"], "input"))
    }

    func expectClose(_ got: [Float]?, _ expected: Golden.TensorCase, rtol: Float, atol: Float, _ what: String) {
        guard let got else { Issue.record("\(what): missing"); return }
        let m = mismatch(got, expected.floats, rtol: rtol, atol: atol)
        #expect(m == nil, "\(what): \(m ?? "")")
    }

    func convertAndRun(_ converter: any GraphConverter, _ n: Network) throws -> (GraphFile, [String: [Float]], [String]) {
        let r = try converter.convert(n.source.outputs)
        let g = try ConverterFixtures.roundTrip(r.outputs)
        return (g, try ConverterFixtures.run(g, x: n.x), r.notes)
    }

    @Test func sourceNetworkReproducesTheReferenceOutput() throws {
        let n = try Self.network()
        let out = try ConverterFixtures.run(n.source, x: n.x)
        expectClose(out["y"], try ConverterFixtures.tensor(n.c["a_reference_output"], "a_reference_output"),
                    rtol: Self.outputTolerance.rtol, atol: Self.outputTolerance.atol, "reference y")
    }

    // MARK: bn-folded

    @Test func foldedParametersAndOutputMatchNnabla() throws {
        let n = try Self.network()
        let (g, out, notes) = try convertAndRun(BatchNormalizationFoldedConverter(), n)
        let b = try #require(n.c["b_batch_normalization_folded"])
        #expect(notes.isEmpty, "\(notes)")
        #expect(ConverterFixtures.functionTypes(g) == ["Convolution", "ReLU", "Affine"])
        for (name, t) in b["folded_params"]?.objectMembers ?? [] {
            let p = try #require(g.variables["bn-folded/\(name)"], "no bn-folded/\(name)")
            let expectedShape = try ConverterFixtures.tensor(t, name).shape
            #expect(p.parent == nil && p.shape == expectedShape)
            expectClose(p.d, try ConverterFixtures.tensor(t, name), rtol: 1e-6, atol: 1e-7, "folded \(name)")
        }
        expectClose(out["y"], try ConverterFixtures.tensor(b["output"], "b.output"),
                    rtol: Self.outputTolerance.rtol, atol: Self.outputTolerance.atol, "folded y")
    }

    /// Without biases the folded weights are the same (W' = c0 W) and the new biases are c1.
    @Test func foldingWithoutBiasGivesTheFoldedWeightsAndC1AsBias() throws {
        let n = try Self.network(withBias: false)
        let (g, out, _) = try convertAndRun(BatchNormalizationFoldedConverter(), n)
        let folded = try #require(n.c["b_batch_normalization_folded"]?["folded_params"])
        let coefficients = try #require(n.c["c_batch_normalization_linear"]?["coefficients"])
        #expect(ConverterFixtures.functionTypes(g) == ["Convolution", "ReLU", "Affine"])
        for w in ["conv/W", "fc/W"] {
            expectClose(g.variables["bn-folded/\(w)"]?.d, try ConverterFixtures.tensor(folded[w], w), rtol: 1e-6, atol: 1e-7, w)
        }
        for (b, bn) in [("conv/b", "bn1"), ("fc/b", "bn2")] {
            let p = try #require(g.variables["bn-folded/\(b)"], "the folded layer always has a bias")
            let expectedShape = try ConverterFixtures.tensor(folded[b], b).shape
            #expect(p.shape == expectedShape)
            expectClose(p.d, try ConverterFixtures.tensor(coefficients["\(bn)/c1"], bn), rtol: 0, atol: 0, "\(b) = c1")
        }
        let reference = try ConverterFixtures.run(n.source, x: n.x)
        let m = mismatch(try #require(out["y"]), try #require(reference["y"]), rtol: 1e-4, atol: 1e-5)
        #expect(m == nil, "\(m ?? "")")
    }

    // MARK: bn-linear

    @Test(arguments: [true, false])
    func linearCoefficientsAndOutputMatchNnabla(withBias: Bool) throws {
        let n = try Self.network(withBias: withBias)
        let (g, out, notes) = try convertAndRun(BatchNormalizationLinearConverter(), n)
        let c = try #require(n.c["c_batch_normalization_linear"])
        #expect(notes.isEmpty, "\(notes)")
        #expect(!ConverterFixtures.functionTypes(g).contains("BatchNormalization"))
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "Mul2" }.count == 2)
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "Add2" }.count == 2)
        // The golden file labels the coefficients of BN k "bn<k>/c0"; nnabla registers them as
        // "c0-bn-linear-<k-1>" in the converter's scope, counting converted BNs in graph order.
        for (name, t) in c["coefficients"]?.objectMembers ?? [] {
            let parts = name.split(separator: "/")
            let k = try #require(Int(parts[0].dropFirst(2)))
            let registered = "bn-linear/\(parts[1])-bn-linear-\(k - 1)"
            let p = try #require(g.variables[registered], "no \(registered)")
            let expectedShape = try ConverterFixtures.tensor(t, name).shape
            #expect(p.shape == expectedShape)
            expectClose(p.d, try ConverterFixtures.tensor(t, name), rtol: 1e-6, atol: 1e-7, "coefficient \(name)")
        }
        if withBias {
            expectClose(out["y"], try ConverterFixtures.tensor(c["output"], "c.output"),
                        rtol: Self.outputTolerance.rtol, atol: Self.outputTolerance.atol, "linear y")
        } else {
            let reference = try ConverterFixtures.run(n.source, x: n.x)
            let m = mismatch(try #require(out["y"]), try #require(reference["y"]), rtol: 1e-4, atol: 1e-5)
            #expect(m == nil, "\(m ?? "")")
        }
    }

    // MARK: fixed-point weight

    static let deltas: [(key: String, delta: Double)] = [("delta2e-4", 2e-4), ("delta0.0625", 0.0625)]

    @Test(arguments: [0, 1])
    func fixedPointWeightsMatchNnabla(deltaIndex: Int) throws {
        let (key, delta) = Self.deltas[deltaIndex]
        let n = try Self.network()
        let converter = deltaIndex == 0 ? FixedPointWeightConverter() // nnabla's defaults
            : FixedPointWeightConverter(argsFpq: .init(deltaW: .fixed(delta), deltaB: .fixed(delta)))
        let (g, out, notes) = try convertAndRun(converter, n)
        let d = try #require(n.c["d_fixed_point_weight"]?[key])
        #expect(notes.isEmpty)
        // BN and ReLU unchanged; one quantizer per weight and bias.
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "FixedPointQuantize" }.count == 4)
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "BatchNormalization" }.count == 2)
        let quantized = (d["quantized_params"]?.objectMembers ?? []).map { $0.0 }
        let values = try ConverterFixtures.computed(g, try quantized.map { try Self.registeredName(quantized: $0, in: n) })
        for (name, t) in d["quantized_params"]?.objectMembers ?? [] {
            expectClose(values[try Self.registeredName(quantized: name, in: n)], try ConverterFixtures.tensor(t, name),
                        rtol: 0, atol: 0, "\(key) \(name)")
        }
        // The float parameters stay the parameters (what training updates).
        #expect(g.variables["conv/W"]?.parent == nil && g.variables["conv/W"]?.d == n.source.variables["conv/W"]?.d)
        expectClose(out["y"], try ConverterFixtures.tensor(d["output"], "\(key).output"),
                    rtol: Self.outputTolerance.rtol, atol: Self.outputTolerance.atol, "\(key) y")
    }

    /// The golden file labels a quantized parameter after its float one ("conv/W_q"); nnabla's
    /// `PF.fixed_point_quantized_convolution` registers it in the converter's scope under the layer and the
    /// parametric function's own scope: "fixed-point-weight-graph/conv/fp_quantized_conv/W_q".
    static func registeredName(quantized name: String, in n: Network) throws -> String {
        let parts = name.split(separator: "/")
        let layer = parts.dropLast().joined(separator: "/")
        let op = n.c["network"]?.array?.first { $0["inputs"]?.array?.contains { $0.string == "\(layer)/W" } ?? false }
        let scope = switch op?["op"]?.string {
        case "convolution": "fp_quantized_conv"
        case "affine": "fp_quantized_affine"
        default: throw KilnError.invalidData("no convolution or affine reads \(layer)/W in the golden network")
        }
        return "fixed-point-weight-graph/\(layer)/\(scope)/\(parts.last ?? "")"
    }

    /// Without biases only the weights are quantized, to the same values.
    @Test func fixedPointWeightsWithoutBias() throws {
        let n = try Self.network(withBias: false)
        let (g, _, _) = try convertAndRun(FixedPointWeightConverter(), n)
        let d = try #require(n.c["d_fixed_point_weight"]?["delta2e-4"]?["quantized_params"])
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "FixedPointQuantize" }.count == 2)
        let names = try ["conv/W_q", "fc/W_q"].map { try Self.registeredName(quantized: $0, in: n) }
        let values = try ConverterFixtures.computed(g, names)
        for (w, name) in zip(["conv/W_q", "fc/W_q"], names) {
            expectClose(values[name], try ConverterFixtures.tensor(d[w], w), rtol: 0, atol: 0, w)
        }
    }

    // MARK: fixed-point activation and sequential

    @Test(arguments: [0, 1])
    func fixedPointActivationsMatchNnabla(deltaIndex: Int) throws {
        let (key, delta) = Self.deltas[deltaIndex]
        let n = try Self.network()
        let converter = deltaIndex == 0 ? FixedPointActivationConverter() : FixedPointActivationConverter(argsFpq: .init(delta: delta))
        let (g, out, _) = try convertAndRun(converter, n)
        let e = try #require(n.c["e_fixed_point_activation"]?[key])
        #expect(ConverterFixtures.functionTypes(g) == ["Convolution", "BatchNormalization", "FixedPointQuantize", "Affine", "BatchNormalization"])
        let q = try #require(g.functions.first { $0.typeName == "FixedPointQuantize" }?.function as? FixedPointQuantize)
        #expect(q.sign == false && q.n == 8 && q.delta == delta)
        expectClose(out["y"], try ConverterFixtures.tensor(e["output"], "\(key).output"),
                    rtol: Self.outputTolerance.rtol, atol: Self.outputTolerance.atol, "\(key) y")
    }

    @Test(arguments: [0, 1])
    func weightThenActivationMatchesNnablasSequentialConversion(deltaIndex: Int) throws {
        let (key, delta) = Self.deltas[deltaIndex]
        let n = try Self.network()
        let converter = SequentialConverter([
            FixedPointWeightConverter(argsFpq: .init(deltaW: .fixed(delta), deltaB: .fixed(delta))),
            FixedPointActivationConverter(argsFpq: .init(delta: delta)),
        ])
        let (g, out, _) = try convertAndRun(converter, n)
        let e = try #require(n.c["e_fixed_point_activation"]?["\(key)_sequential_with_weight_converter"])
        #expect(ConverterFixtures.functionTypes(g).filter { $0 == "FixedPointQuantize" }.count == 5)
        expectClose(out["y"], try ConverterFixtures.tensor(e["output"], "\(key) sequential output"),
                    rtol: Self.outputTolerance.rtol, atol: Self.outputTolerance.atol, "\(key) sequential y")
    }

    // MARK: identity and the untouched source

    @Test func identityComputesTheSameAndEveryConversionLeavesTheSourceAlone() throws {
        let n = try Self.network()
        let reference = try ConverterFixtures.run(n.source, x: n.x)   // (sets x, which files include)
        let before = GraphFile.save(n.source.outputs)
        let (g, out, _) = try convertAndRun(IdentityConverter(), n)
        #expect(GraphFile.save(g.outputs) == before, "identity writes the same graph file")
        #expect(out["y"] == reference["y"])
        let all: [any GraphConverter] = [BatchNormalizationFoldedConverter(), BatchNormalizationLinearConverter(),
                                         FixedPointWeightConverter(), FixedPointActivationConverter()]
        for c in all { _ = try c.convert(n.source.outputs) }
        #expect(GraphFile.save(n.source.outputs) == before)
    }
}
