import Testing
@testable import Kiln

/// Every function case computed by nnabla 1.39 (Fixtures/golden): forward outputs, BN running statistics
/// and nnabla's own input gradients for a random output gradient, with the README's tolerances.
struct GoldenFunctionTests {
    static let families = ["activations", "affine", "arithmetic", "batch_normalization", "convolution",
                           "deconvolution", "embed", "losses", "pooling", "quantization", "reductions", "shape_ops"]
    static let allCases = families.flatMap { Golden.cases($0) }

    static func tolerance(_ c: Golden.FunctionCase) -> (rtol: Float, atol: Float) {
        switch c.file {
        case "pooling", "shape_ops", "embed", "quantization": return (0, 0)
        case "losses" where c.function == "top_n_error" || c.function == "binary_error": return (0, 0)
        case "activations" where !c.function.contains("softmax"): return (1e-5, 1e-6)
        case "arithmetic": return (1e-5, 1e-6)
        default: return (1e-4, 1e-5)
        }
    }

    @Test func everyFamilyHasCases() {
        #expect(Self.allCases.count >= 70)
    }

    @Test(arguments: allCases)
    func forwardMatchesNnabla(_ c: Golden.FunctionCase) throws {
        let f = try Golden.function(c)
        let (outs, mutated) = try Harness.forward(f, c.inputs.map { try $0.array() })
        let tol = Self.tolerance(c)
        #expect(outs.count == c.outputs.count)
        for (o, e) in zip(outs, c.outputs) {
            #expect(o.shape == e.shape, "\(c.name): output shape")
            let m = mismatch(o.toFloats(), e.floats, rtol: tol.rtol, atol: tol.atol)
            #expect(m == nil, "\(c.name): \(m ?? "")")
        }
        if let mean = c.extra["running_mean_after_forward"], let variance = c.extra["running_var_after_forward"] {
            let k = c.inputs.count
            let mm = mismatch(mutated[k - 2].toFloats(), mean.floats, rtol: 1e-5, atol: 1e-6)
            let vm = mismatch(mutated[k - 1].toFloats(), variance.floats, rtol: 1e-5, atol: 1e-6)
            #expect(mm == nil, "\(c.name) running mean: \(mm ?? "")")
            #expect(vm == nil, "\(c.name) running var: \(vm ?? "")")
        }
    }

    @Test(arguments: allCases.filter { $0.outputGrads != nil })
    func backwardMatchesNnabla(_ c: Golden.FunctionCase) throws {
        let f = try Golden.function(c)
        let og = try (c.outputGrads ?? []).map { try $0.array() }
        let want = c.differentiable
        let grads = try Harness.backward(f, inputs: c.inputs.map { try $0.array() }, outputGrads: og, want: want)
        let tol = Self.tolerance(c)
        for (i, expected) in (c.inputGrads ?? []).enumerated() {
            guard let expected else { continue }
            let g = try #require(grads[i], "\(c.name): no gradient for input \(i)")
            let m = mismatch(g.toFloats(), expected.floats, rtol: max(tol.rtol, 1e-5), atol: max(tol.atol, 1e-6))
            #expect(m == nil, "\(c.name) d input \(i): \(m ?? "")")
        }
    }

    /// The accumulate path adds to what is there instead of overwriting it.
    @Test(arguments: allCases.filter { $0.outputGrads != nil })
    func backwardAccumulates(_ c: Golden.FunctionCase) throws {
        let f = try Golden.function(c)
        let og = try (c.outputGrads ?? []).map { try $0.array() }
        let inputs = try c.inputs.map { try $0.array() }
        let fresh = try Harness.backward(f, inputs: inputs, outputGrads: og, want: c.differentiable)
        let initial: [NDArray?] = inputs.enumerated().map { i, a in
            c.differentiable[i] ? Harness.random(a.shape, seed: UInt64(i + 7)) : nil
        }
        let acc = try Harness.backward(f, inputs: inputs, outputGrads: og, want: c.differentiable, initial: initial)
        for i in inputs.indices {
            guard let g = fresh[i], let a = acc[i], let start = initial[i] else { continue }
            let expected = zip(g.toFloats(), start.toFloats()).map { $0 + $1 }
            let m = mismatch(a.toFloats(), expected, rtol: 1e-5, atol: 1e-5)
            #expect(m == nil, "\(c.name) accumulate d input \(i): \(m ?? "")")
        }
    }
}
