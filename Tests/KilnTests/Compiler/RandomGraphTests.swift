import Testing
@testable import Kiln

/// Property tests over many random graphs (chains, branches, residual joins, shared inputs, several
/// outputs): the memory-planned plan must give bit-identical outputs and gradients to a plan with no
/// reuse, and every plan must verify.
struct RandomGraphTests {
    struct Built {
        var leaves: [Variable]
        var roots: [Variable]
    }

    /// A random graph over [4, 8] values drawn from element-wise, affine, concatenate/split and reduction
    /// functions, with 1-3 roots.
    static func build(seed: UInt64) throws -> Built {
        var rng = SplitMix64(seed: seed)
        var leaves: [Variable] = []
        for i in 0..<3 {
            let v = try Variable(shape: [4, 8], needGrad: i != 2, name: "in\(i)")
            try v.setData((0..<32).map { _ in Float.random(in: -1...1, using: &rng) })
            leaves.append(v)
        }
        var pool = leaves
        let steps = Int.random(in: 4...24, using: &rng)
        for _ in 0..<steps {
            // Prefer recent values (chains) but reach back sometimes (residual joins, shared inputs).
            func pick() -> Variable {
                let back = Int.random(in: 0..<100, using: &rng) < 70 ? Int.random(in: 0..<min(3, pool.count), using: &rng)
                                                                     : Int.random(in: 0..<pool.count, using: &rng)
                return pool[pool.count - 1 - back]
            }
            let a = pick(), b = pick()
            let y: Variable
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: y = try F.add2(a, b)
            case 1: y = try F.mul2(a, b)
            case 2: y = try F.sub2(a, b)
            case 3: y = try F.relu(a)
            case 4: y = try F.tanh(a)
            case 5: y = try F.mulScalar(a, val: 0.5)
            case 6:
                let w = try Variable(shape: [8, 8], needGrad: true)
                try w.setData((0..<64).map { _ in Float.random(in: -0.5...0.5, using: &rng) })
                leaves.append(w)
                y = try F.affine(a, w)
            case 7:
                let c = try F.concatenate([a, b], axis: 1)
                let parts = try F.split(F.reshape(c, shape: [4, 2, 8]), axis: 1)
                y = parts[Int.random(in: 0..<2, using: &rng)]
            case 8: y = try F.sigmoid(F.add2(a, a))
            default:
                let s = try F.sum(a, axes: [1], keepDims: true)
                y = try F.mul2(b, F.add2(s, F.mulScalar(s, val: 0)) ) // broadcast [4,1] over [4,8]
            }
            pool.append(y)
        }
        let rootCount = Int.random(in: 1...3, using: &rng)
        var roots: [Variable] = []
        for k in 0..<rootCount {
            let r = pool[pool.count - 1 - min(k * 2, pool.count - 4)]
            if !roots.contains(where: { $0 === r }) { roots.append(r) }
        }
        return Built(leaves: leaves, roots: roots)
    }

    static func run(_ g: Built, clearBuffer: Bool, mode: PlanMode, recompute: Bool = true) throws -> [[Float]] {
        for l in g.leaves { l.zeroGrad() }
        let exe = try Compiler.compile(g.roots, mode, options: CompileOptions(clearBuffer: clearBuffer, recompute: recompute))
        try exe.plan.verify()
        try exe.run()
        var out = g.roots.map { $0.d }
        if mode == .training { out += g.leaves.filter { $0.needGrad }.map { $0.g } }
        return out
    }

    @Test(arguments: 0..<60)
    func plannedMatchesUnplannedBitForBit(seed: Int) throws {
        let g = try Self.build(seed: UInt64(seed) &* 7919 &+ 13)
        for mode in PlanMode.allCases {
            let planned = try Self.run(g, clearBuffer: true, mode: mode)
            let naive = try Self.run(g, clearBuffer: false, mode: mode)
            #expect(planned == naive, "seed \(seed) \(mode)")
            let kept = try Self.run(g, clearBuffer: true, mode: mode, recompute: false)
            #expect(planned == kept, "seed \(seed) \(mode): recomputation changed a result")
        }
    }

    @Test(arguments: 0..<20)
    func reuseSavesMemoryOnLongGraphs(seed: Int) throws {
        let g = try Self.build(seed: UInt64(seed) &+ 1000)
        let planned = try Compiler.plan(g.roots, .training, options: CompileOptions(clearBuffer: true))
        let naive = try Compiler.plan(g.roots, .training, options: CompileOptions(clearBuffer: false))
        #expect(planned.arenaBytes <= naive.arenaBytes)
        #expect(naive.arenaBytes == naive.naiveBytes)
        #expect(planned.arenaBytes >= planned.lowerBoundBytes)
        let kept = try Compiler.plan(g.roots, .training, options: CompileOptions(recompute: false))
        #expect(planned.arenaBytes <= kept.arenaBytes)
    }
}
