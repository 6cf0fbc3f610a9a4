import Foundation
import Testing
@testable import Kiln

private func close(_ a: [Float], _ b: [Float], rtol: Float = 1e-5, atol: Float = 1e-6) -> String? {
    mismatch(a, b, rtol: rtol, atol: atol)
}

private func param(_ values: [Float], _ shape: [Int]? = nil) throws -> Variable {
    let v = try Variable(shape: shape ?? [values.count], needGrad: true)
    try v.setData(values)
    return v
}

private func tempPath(_ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-solvers-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.appendingPathComponent(name).path
}

/// The solver of a golden case, from its class name and constructor kwargs.
private func makeSolver(_ function: String, _ args: JSON) throws -> Solver {
    func f(_ k: String) -> Float? { args[k]?.double.map { Float($0) } }
    switch function {
    case "solvers.Sgd": return Sgd(lr: f("lr") ?? 1e-3)
    case "solvers.Momentum": return Momentum(lr: f("lr") ?? 1e-3, momentum: f("momentum") ?? 0.9)
    case "solvers.Nesterov": return Nesterov(lr: f("lr") ?? 1e-3, momentum: f("momentum") ?? 0.9)
    case "solvers.Adagrad": return Adagrad(lr: f("lr") ?? 1e-2, eps: f("eps") ?? 1e-8)
    case "solvers.RMSprop": return RMSprop(lr: f("lr") ?? 1e-3, decay: f("decay") ?? 0.9, eps: f("eps") ?? 1e-8)
    case "solvers.Adam":
        return Adam(alpha: f("alpha") ?? 1e-3, beta1: f("beta1") ?? 0.9, beta2: f("beta2") ?? 0.999, eps: f("eps") ?? 1e-8)
    case "solvers.AdamW":
        return AdamW(alpha: f("alpha") ?? 1e-3, beta1: f("beta1") ?? 0.9, beta2: f("beta2") ?? 0.999,
                     eps: f("eps") ?? 1e-8, wd: f("wd") ?? 1e-4)
    case "solvers.SgdW": return SgdW(lr: f("lr") ?? 1e-3, momentum: f("momentum") ?? 0.9, wd: f("wd") ?? 1e-4)
    default: throw KilnError.invalidParameters("unknown solver \(function)")
    }
}

/// The number inside "solver.xxx(number)".
private func callArgument(_ call: String) -> Float? {
    guard let open = call.firstIndex(of: "("), let close = call.lastIndex(of: ")") else { return nil }
    return Float(call[call.index(after: open)..<close])
}

struct SolverGoldenTests {
    static let cases: [JSON] = ((try? Golden.json("solvers"))?["cases"]?.array) ?? []
    static let names: [String] = cases.compactMap { $0["name"]?.string }

    @Test func fileHasCases() {
        #expect(Self.names.count >= 7)
    }

    @Test(arguments: names)
    func goldenCase(_ name: String) throws {
        let c = try #require(Self.cases.first { $0["name"]?.string == name })
        let function = try #require(c["function"]?.string)
        let solver = try makeSolver(function, c["args"] ?? .object([]))
        let initW = try #require(Golden.tensor(c["params_init"]?["w"]))
        let initB = try #require(Golden.tensor(c["params_init"]?["b"]))
        let w = try param(initW.floats, initW.shape), b = try param(initB.floats, initB.shape)
        let vars = ["w": w, "b": b]
        solver.setParameters([("w", w), ("b", b)])

        for step in c["steps"]?.array ?? [] {
            let n = step["step"]?.int ?? -1
            let calls = try #require(step["calls"]?.array?.compactMap { $0.string })
            var updated = false
            for call in calls {
                if call == "solver.zero_grad()" {
                    solver.zeroGrad()
                } else if call.hasPrefix("w.g = ") || call.hasPrefix("b.g = ") {
                    let key = String(call.prefix(1))
                    let g = try #require(Golden.tensor(step["grads_set"]?[key]))
                    try vars[key]!.setGrad(g.floats)
                } else if call.hasPrefix("solver.weight_decay(") {
                    solver.weightDecay(try #require(callArgument(call)))
                } else if call.hasPrefix("solver.scale_grad(") {
                    solver.scaleGrad(try #require(callArgument(call)))
                } else if call == "solver.update()" {
                    for (key, v) in vars {
                        let g = try #require(Golden.tensor(step["grads_at_update"]?[key]))
                        // An unwritten gradient is zero in both (nnabla shows its lazily zeroed array).
                        let ours = v.gradWritten ? v.g : [Float](repeating: 0, count: v.size)
                        if let m = close(ours, g.floats) { Issue.record("\(name) step \(n) grad \(key) at update: \(m)") }
                    }
                    solver.update()
                    updated = true
                } else {
                    Issue.record("\(name): unknown call \(call)")
                }
            }
            #expect(updated)
            for (key, v) in vars {
                let p = try #require(Golden.tensor(step["params_after"]?[key]))
                if let m = close(v.d, p.floats) { Issue.record("\(name) step \(n) param \(key): \(m)") }
                let st = try #require(step["states_after"]?[key])
                let state = try #require(solver.state(key))
                #expect(state.t == st["t"]?.int, "\(name) step \(n) \(key).t")
                let expectedNames = (st.objectMembers ?? []).map { $0.0 }.filter { $0 != "t" }
                #expect(Set(expectedNames) == Set(state.names), "\(name) state names")
                for sn in expectedNames {
                    let e = try #require(Golden.tensor(st[sn]))
                    let a = try #require(state[sn])
                    #expect(a.shape == e.shape)
                    if let m = close(a.toFloats(), e.floats) { Issue.record("\(name) step \(n) state \(key)/\(sn): \(m)") }
                }
            }
        }
        // Results of check_inf_or_nan_grad, when the file has them.
        for r in c["results"]?.array ?? [] {
            for (key, v) in vars {
                if let g = Golden.tensor(r["grads"]?[key]) { try v.setGrad(g.floats) }
            }
            #expect(solver.checkInfOrNanGrad() == r["check_inf_or_nan_grad"]?.bool)
        }
    }
}

struct SolverTests {
    // p = [0.5, -1, 2]; step k (1-based) has g = k * [0.3, -0.2, 1.5].
    static let p0: [Float] = [0.5, -1, 2]
    static let g1: [Float] = [0.3, -0.2, 1.5]

    func run(_ solver: Solver, steps: Int) throws -> (Variable, SolverState) {
        let w = try param(Self.p0)
        solver.setParameters([("w", w)])
        for k in 1...steps {
            solver.zeroGrad()
            try w.setGrad(Self.g1.map { $0 * Float(k) })
            solver.update()
        }
        return (w, try #require(solver.state("w")))
    }

    @Test func defaultsAreNnablas() {
        #expect(Sgd().learningRate == 1e-3)
        let m = Momentum(); #expect(m.learningRate == 1e-3 && m.momentum == 0.9)
        let n = Nesterov(); #expect(n.learningRate == 1e-3 && n.momentum == 0.9)
        let ag = Adagrad(); #expect(ag.learningRate == 1e-2 && ag.eps == 1e-8)
        let r = RMSprop(); #expect(r.learningRate == 1e-3 && r.decay == 0.9 && r.eps == 1e-8)
        let a = Adam(); #expect(a.alpha == 1e-3 && a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8)
        let aw = AdamW(); #expect(aw.alpha == 1e-3 && aw.beta1 == 0.9 && aw.beta2 == 0.999 && aw.eps == 1e-8 && aw.wd == 1e-4)
        let sw = SgdW(); #expect(sw.learningRate == 1e-3 && sw.momentum == 0.9 && sw.wd == 1e-4)
        #expect([Sgd().name, Momentum().name, Nesterov().name, Adagrad().name, RMSprop().name, Adam().name,
                 AdamW().name, SgdW().name] == ["Sgd", "Momentum", "Nesterov", "Adagrad", "RMSprop", "Adam", "AdamW", "SgdW"])
        #expect(Adam().stateNames == ["mean", "var"] && Momentum().stateNames == ["m"] && Nesterov().stateNames == ["m"])
        #expect(Adagrad().stateNames == ["v"] && RMSprop().stateNames == ["v"] && SgdW().stateNames == ["m"])
        #expect(Sgd().stateNames.isEmpty)
    }

    @Test func nesterovTwoSteps() throws {
        // Step 1: m = 0.9*0 - 0.1*g = -0.1*g = [-0.03, 0.02, -0.15];
        //         p += -0.9*0 + 1.9*m -> [0.5-0.057, -1+0.038, 2-0.285] = [0.443, -0.962, 1.715].
        // Step 2 (g = 2*g1 = [0.6, -0.4, 3]): m = 0.9*m - 0.1*g = [-0.027-0.06, 0.018+0.04, -0.135-0.3]
        //         = [-0.087, 0.058, -0.435]; p += -0.9*m_prev + 1.9*m = [0.027-0.1653, -0.018+0.1102, 0.135-0.8265]
        //         -> [0.3047, -0.8698, 1.0235].
        let s = Nesterov(lr: 0.1, momentum: 0.9)
        let (w1, st1) = try run(s, steps: 1)
        #expect(close(w1.d, [0.443, -0.962, 1.715]) == nil)
        #expect(close(st1["m"]!.toFloats(), [-0.03, 0.02, -0.15]) == nil)
        let (w2, st2) = try run(Nesterov(lr: 0.1, momentum: 0.9), steps: 2)
        #expect(close(w2.d, [0.3047, -0.8698, 1.0235]) == nil)
        #expect(close(st2["m"]!.toFloats(), [-0.087, 0.058, -0.435]) == nil)
        #expect(st2.t == 2)
    }

    @Test func adagradTwoSteps() throws {
        // Step 1: v = g^2 = [0.09, 0.04, 2.25]; p -= 0.1*g/sqrt(v) = 0.1*sign(g) -> [0.4, -0.9, 1.9].
        // Step 2 (g = 2*g1): v = g1^2 + 4*g1^2 = 5*g1^2 = [0.45, 0.2, 11.25];
        //         p -= 0.1*2*g1/(sqrt(5)*|g1|) = 0.2/sqrt(5)*sign = 0.08944272 -> [0.31055728, -0.81055728, 1.81055728].
        let (w1, _) = try run(Adagrad(lr: 0.1), steps: 1)
        #expect(close(w1.d, [0.4, -0.9, 1.9]) == nil)
        let (w2, st) = try run(Adagrad(lr: 0.1), steps: 2)
        #expect(close(w2.d, [0.31055728, -0.81055728, 1.81055728]) == nil)
        #expect(close(st["v"]!.toFloats(), [0.45, 0.2, 11.25]) == nil)
    }

    @Test func rmspropTwoSteps() throws {
        // Step 1: v = 0.1*g^2 = [0.009, 0.004, 0.225]; p -= 0.1*g/(sqrt(0.1)*|g|) = sqrt(0.1)*sign = 0.31622777
        //         -> [0.18377223, -0.68377223, 1.68377223].
        // Step 2 (g = 2*g1): v = 0.9*0.1*g1^2 + 0.1*4*g1^2 = 0.49*g1^2 = [0.0441, 0.0196, 1.1025];
        //         p -= 0.1*2*g1/(0.7*|g1|) = 0.2/0.7 = 0.28571429 -> [-0.10194206, -0.39805794, 1.39805794].
        let (w1, _) = try run(RMSprop(lr: 0.1, decay: 0.9), steps: 1)
        #expect(close(w1.d, [0.18377223, -0.68377223, 1.68377223]) == nil)
        let (w2, st) = try run(RMSprop(lr: 0.1, decay: 0.9), steps: 2)
        #expect(close(w2.d, [-0.10194206, -0.39805794, 1.39805794], rtol: 1e-5, atol: 2e-6) == nil)
        #expect(close(st["v"]!.toFloats(), [0.0441, 0.0196, 1.1025]) == nil)
    }

    @Test func sgdwOneStep() throws {
        // m = 0.9*0 + 0.1*g = [0.03, -0.02, 0.15]; p = p - m - (0.1/0.1)*1e-4*p
        //   = [0.5-0.03-0.00005, -1+0.02+0.0001, 2-0.15-0.0002] = [0.46995, -0.9799, 1.8498].
        let (w, st) = try run(SgdW(lr: 0.1, momentum: 0.9, wd: 1e-4), steps: 1)
        #expect(close(w.d, [0.46995, -0.9799, 1.8498]) == nil)
        #expect(close(st["m"]!.toFloats(), [0.03, -0.02, 0.15]) == nil)
    }

    @Test func momentumOneStep() throws {
        // m = 0.1*g = [0.03, -0.02, 0.15]; p -= m -> [0.47, -0.98, 1.85].
        let (w, _) = try run(Momentum(lr: 0.1, momentum: 0.9), steps: 1)
        #expect(close(w.d, [0.47, -0.98, 1.85]) == nil)
    }

    @Test func fusedWeightDecayLastsOneUpdate() throws {
        // SgdW(lr 0.1, momentum 0, wd 0.1) with g = 0: m stays 0, so p = p - wd_used*p.
        // Step 1 after weightDecay(0.5): p = [0.5, -1] * 0.5 = [0.25, -0.5]; the grads stay 0.
        // Step 2 without a call: wd is back to 0.1: p = [0.25, -0.5] * 0.9 = [0.225, -0.45].
        let s = SgdW(lr: 0.1, momentum: 0, wd: 0.1)
        let w = try param([0.5, -1])
        s.setParameters([("w", w)])
        s.zeroGrad(); try w.setGrad([0, 0]); s.weightDecay(0.5)
        #expect(w.g == [0, 0])
        s.update()
        #expect(close(w.d, [0.25, -0.5]) == nil)
        s.zeroGrad(); try w.setGrad([0, 0]); s.update()
        #expect(close(w.d, [0.225, -0.45]) == nil)
    }

    @Test func learningRateChangeScalesAdamWDecay() throws {
        // AdamW(alpha 0.01, wd 0.1), p = [0.5, -1], g = [0.3, -0.2], t = 1:
        // m = 0.1*g, v = 0.001*g^2, alpha_t = alpha*sqrt(0.001)/0.1, so the Adam step is
        // alpha*sqrt(0.001)/0.1 * 0.1*g/(sqrt(0.001)*|g| + 1e-8) ~= alpha*sign(g) (to ~1e-7 relative).
        // Unchanged lr:   p = p - 0.01*sign(g) - 1*0.1*p       = [0.5-0.01-0.05, -1+0.01+0.1]   = [0.44, -0.89].
        // lr set to 0.005: eta = 0.005/0.01 = 0.5: p = p - 0.005*sign(g) - 0.5*0.1*p = [0.47, -0.945].
        for (lr, expected) in [(Float(0.01), [Float(0.44), -0.89]), (0.005, [0.47, -0.945])] {
            let s = AdamW(alpha: 0.01, wd: 0.1)
            let w = try param([0.5, -1])
            s.setParameters([("w", w)])
            s.learningRate = lr
            s.zeroGrad(); try w.setGrad([0.3, -0.2]); s.update()
            #expect(close(w.d, expected) == nil, "lr \(lr)")
            #expect(s.alpha == lr)
        }
    }

    @Test func clipGradByNormIsPerParameter() throws {
        // a: g = [3, 4], norm 5 > 1 -> g * 1/5 = [0.6, 0.8]. b: g = [0.5, 0], norm 0.5 <= 1 -> unchanged.
        // With clip 10 nothing changes.
        let a = try param([3, 4]), b = try param([1, 0])
        let s = Sgd(lr: 1)
        s.setParameters([("a", a), ("b", b)])
        s.zeroGrad(); try a.setGrad([3, 4]); try b.setGrad([0.5, 0])
        s.clipGradByNorm(10)
        #expect(a.g == [3, 4] && b.g == [0.5, 0])
        s.clipGradByNorm(1)
        #expect(close(a.g, [0.6, 0.8]) == nil)
        #expect(b.g == [0.5, 0])
        // Then update with lr 1: p -= g -> a = [2.4, 3.2], b = [0.5, 0].
        s.update()
        #expect(close(a.d, [2.4, 3.2]) == nil && close(b.d, [0.5, 0]) == nil)
    }

    @Test func weightDecayAndScaleGradInPlace() throws {
        // weightDecay(0.5): g += 0.5*p = [0.3+0.25, -0.2-0.5] = [0.55, -0.7] (same for every non-fused solver);
        // scaleGrad(2) -> [1.1, -1.4]; weightDecay(0) changes nothing.
        for s in [Sgd(lr: 0.1), Momentum(lr: 0.1), Nesterov(lr: 0.1), Adagrad(lr: 0.1), RMSprop(lr: 0.1), Adam()] as [Solver] {
            let w = try param([0.5, -1])
            s.setParameters([("w", w)])
            s.zeroGrad(); try w.setGrad([0.3, -0.2])
            s.weightDecay(0)
            #expect(w.g == [0.3, -0.2])
            s.weightDecay(0.5)
            #expect(close(w.g, [0.55, -0.7]) == nil, "\(s.name)")
            s.scaleGrad(2)
            #expect(close(w.g, [1.1, -1.4]) == nil, "\(s.name)")
        }
        // Fused solvers leave the gradient alone.
        for s in [AdamW(), SgdW()] as [Solver] {
            let w = try param([0.5, -1])
            s.setParameters([("w", w)])
            s.zeroGrad(); try w.setGrad([0.3, -0.2])
            s.weightDecay(0.5)
            #expect(w.g == [0.3, -0.2], "\(s.name)")
        }
    }

    @Test func unwrittenGradientsAreSkipped() throws {
        let w = try param([0.5, -1]), b = try param([1, 2])
        let s = Adam(alpha: 0.1)
        s.setParameters([("w", w), ("b", b)])
        s.zeroGrad()
        try w.setGrad([0.3, -0.2])
        // b's grad array holds garbage but was never written after zeroGrad: every operation ignores it.
        b.grad.floats[0] = .nan
        b.grad.floats[1] = 7
        #expect(!b.gradWritten)
        #expect(s.checkInfOrNanGrad() == false)
        s.weightDecay(0.1)
        s.scaleGrad(3)
        s.clipGradByNorm(0.5)
        #expect(b.grad.floats[1] == 7)
        s.update()
        #expect(b.d == [1, 2])
        #expect(s.state("b")!.t == 0)
        #expect(s.state("b")!["mean"]!.toFloats() == [0, 0] && s.state("b")!["var"]!.toFloats() == [0, 0])
        #expect(s.state("w")!.t == 1)
        #expect(w.d != [0.5, -1])
    }

    @Test func checkInfOrNan() throws {
        let w = try param([0.5, -1]), q = try param([1])
        let s = Sgd(lr: 0.1)
        s.setParameters([("w", w), ("q", q)])
        s.zeroGrad()
        try w.setGrad([3e38, 1])
        #expect(s.checkInfOrNanGrad() == false)
        try q.setGrad([.infinity])
        #expect(s.checkInfOrNanGrad() == true)
        try q.setGrad([-.infinity])
        #expect(s.checkInfOrNanGrad() == true)
        try q.setGrad([.nan])
        #expect(s.checkInfOrNanGrad() == true)
        s.zeroGrad()
        #expect(s.checkInfOrNanGrad() == false)
    }

    @Test func setParametersRetainAndReset() throws {
        let a = try param([1, 1]), b = try param([2])
        let s = Momentum(lr: 0.1)
        s.setParameters([("a", a)])
        s.zeroGrad(); try a.setGrad([1, 1]); s.update()
        #expect(s.state("a")!.t == 1)
        // Same name, same shape, retainState: state kept.
        s.setParameters([("a", a)], reset: false, retainState: true)
        #expect(s.state("a")!.t == 1 && s.state("a")!["m"]!.toFloats() == [0.1, 0.1])
        // Without retainState the state restarts.
        s.setParameters([("a", a)], reset: false)
        #expect(s.state("a")!.t == 0 && s.state("a")!["m"]!.toFloats() == [0, 0])
        // A new shape under retainState restarts too.
        s.setParameters([("a", try param([1, 2, 3]))], reset: false, retainState: true)
        #expect(s.state("a")!["m"]!.shape == [3])
        s.setParameters([("b", b)], reset: false)
        #expect(s.parameters.map { $0.name } == ["a", "b"])
        s.removeParameters(["a", "nonexistent"])
        #expect(s.parameters.map { $0.name } == ["b"])
        s.setParameters([("a", a)])
        #expect(s.parameters.map { $0.name } == ["a"])
        s.clearParameters()
        #expect(s.parameters.isEmpty && s.states.isEmpty)
    }

    @Test func acceptsRegistryParameters() throws {
        let v = try param([1, 2])
        let list: [(name: String, variable: Variable)] = [(name: "x/W", variable: v)]
        let s = Sgd(lr: 0.5)
        s.setParameters(ParameterDictionary(list))
        s.zeroGrad(); try v.setGrad([2, 2]); s.update()
        #expect(v.d == [0, 1])
    }

    @Test func stateRoundTripContinuesIdentically() throws {
        for make in [{ Adam(alpha: 0.01) }, { AdamW(alpha: 0.01, wd: 0.1) }, { Momentum(lr: 0.1) },
                     { Nesterov(lr: 0.1) }, { RMSprop(lr: 0.01) }, { Adagrad(lr: 0.1) }, { SgdW(lr: 0.1) },
                     { Sgd(lr: 0.1) }] as [() -> Solver] {
            let w = try param([0.5, -1, 2, 0.25, 3, -2], [2, 3]), b = try param([0.1, 0.2, 0.3])
            let s1 = make()
            s1.setParameters([("layer/W", w), ("layer/b", b)])
            let grads: [[Float]] = [[0.3, -0.2, 1.5, 0.1, -0.7, 0.4], [0.2, 0.1, -0.5, 0.9, 0.3, -0.1], [-0.4, 0.6, 0.2, 0.0, 1.1, -0.3]]
            func step(_ s: Solver, _ w: Variable, _ b: Variable, _ k: Int) throws {
                s.zeroGrad()
                try w.setGrad(grads[k])
                try b.setGrad(Array(grads[k].prefix(3)))
                s.update()
            }
            try step(s1, w, b, 0)
            try step(s1, w, b, 1)
            let path = try tempPath("states-\(s1.name).safetensors")
            try s1.saveStates(path: path)
            // A fresh solver on copies of the parameters, states loaded from the file.
            let w2 = try param(w.d, [2, 3]), b2 = try param(b.d)
            let s2 = make()
            s2.setParameters([("layer/W", w2), ("layer/b", b2)])
            try s2.loadStates(path: path)
            #expect(s2.state("layer/W")!.t == 2)
            try step(s1, w, b, 2)
            try step(s2, w2, b2, 2)
            #expect(w.d == w2.d && b.d == b2.d, "\(s1.name)")
            for n in s1.stateNames {
                #expect(s1.state("layer/W")![n]!.toFloats() == s2.state("layer/W")![n]!.toFloats())
            }
            #expect(s2.state("layer/b")!.t == 3)
            let file = try SafeTensors.read(path: path)
            #expect(Set(file.tensors.map { $0.0 }) == Set(["layer/W/t", "layer/b/t"] + s1.stateNames.flatMap { ["layer/W/\($0)", "layer/b/\($0)"] }))
            #expect(file.metadata["solver"] == s1.name)
        }
    }

    @Test func loadStatesRejectsMismatches() throws {
        let w = try param([1, 2, 3])
        let s = Adam()
        s.setParameters([("w", w)])
        let path = try tempPath("states-adam.safetensors")
        try s.saveStates(path: path)
        // A parameter the file does not know.
        let other = Adam()
        other.setParameters([("w", w), ("extra", try param([1]))])
        do { try other.loadStates(path: path); Issue.record("no error") } catch {
            #expect("\(error)".contains("extra"))
        }
        // A state of another shape.
        let shaped = Adam()
        shaped.setParameters([("w", try param([1, 2]))])
        do { try shaped.loadStates(path: path); Issue.record("no error") } catch {
            #expect("\(error)".contains("w/mean"))
        }
        // States of a parameter the solver does not have.
        let fewer = Adam()
        fewer.setParameters([])
        #expect(throws: KilnError.self) { try fewer.loadStates(path: path) }
        // Momentum has no "mean"/"var" but needs "m".
        let mom = Momentum()
        mom.setParameters([("w", w)])
        #expect(throws: KilnError.self) { try mom.loadStates(path: path) }
        #expect(mom.state("w")!.t == 0)
    }

    /// A NaN or infinite moment would spread into every later update: refused, naming the state and index,
    /// unless allowed; nothing changes when refused.
    @Test func loadStatesRefusesNonFiniteValues() throws {
        let w = try param([0, 0, 0])
        let s = Adam()
        s.setParameters([("w", w)])
        let path = try tempPath("states-nan.safetensors")
        let t = NDArray(validated: TensorType([], .int32))
        t.int32s[0] = 4
        let mean = try NDArray(shape: [3], floats: [0.5, .nan, 0.5]), variance = try NDArray(shape: [3], floats: [1, 1, 1])
        try SafeTensors.write([("w/t", t), ("w/mean", mean), ("w/var", variance)], to: path)
        let error = #expect(throws: KilnError.self) { try s.loadStates(path: path) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("solver state 'w/mean' holds nan at index 1"))
        #expect(s.state("w")!.t == 0)
        try s.loadStates(path: path, allowNonFinite: true)
        #expect(s.state("w")!.t == 4)
    }
}
