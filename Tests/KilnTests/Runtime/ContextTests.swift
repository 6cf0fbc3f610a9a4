import Testing
@testable import Kiln
@testable import KilnRuntime

/// The context is the one value outside the graph that decides a plan: what a plan took from it is recorded
/// in the plan and in the cache key, so a plan made for one context is never run as if made for another.
struct ContextTests {
    /// ResNet-20's stem at batch 8: its convolution workspace holds one slice per thread.
    static func stem() throws -> Variable {
        let x = try Variable(shape: [8, 3, 32, 32])
        x.d = (0..<x.size).map { Float($0 % 13) / 13 }
        let w = try PF.convolution(x, outMaps: 16, kernel: [3, 3], pad: [1, 1], name: "stem")
        return try F.relu(w)
    }

    @Test func plansRecordTheirContextsThreadsAndWorkspacesFollowThem() throws {
        try Parameters.isolated {
            let y = try Self.stem()
            let one = try Compiler.plan([y], .inference, context: Context(threads: 1))
            let two = try Compiler.plan([y], .inference, context: Context(threads: 2))
            #expect(one.threads == 1 && two.threads == 2)
            let workspace = { (p: Plan) in p.buffers.filter { $0.kind == .workspace }.map(\.bytes).reduce(0, +) }
            #expect(workspace(two) > workspace(one))
            #expect(two.dump().hasPrefix("plan inference  clear_buffer=true  clear_no_need_grad=true  threads=2\n"))
            #expect(!one.dump().contains("threads="))
        }
    }

    /// A plan compiled at one thread is not reused under a context of two: the cache keys on the threads.
    @Test func thePlanCacheNeverMixesThreadCounts() throws {
        try Parameters.isolated {
            let y = try Self.stem()
            try Context.with({ $0.threads = 1 }) { try y.forward(clearBuffer: true) }
            let d1 = y.d
            let onOne = try #require(y.planCache.values.first?.executable)
            try Context.with({ $0.threads = 2 }) { try y.forward(clearBuffer: true) }
            #expect(y.planCache.count == 2)
            let threads = Set(y.planCache.values.map { $0.executable.plan.threads })
            #expect(threads == [1, 2])
            #expect(y.d == d1)
            // Under one thread again, the first executable is found, not recompiled.
            try Context.with({ $0.threads = 1 }) { try y.forward(clearBuffer: true) }
            #expect(y.planCache.count == 2)
            #expect(y.planCache.values.contains { $0.executable === onOne })
        }
    }

    /// An executable runs on its plan's threads, or on fewer when asked; never on more than its workspaces hold.
    @Test func executablesRunOnAtMostTheirPlansThreads() throws {
        try Parameters.isolated {
            let y = try Self.stem()
            let one = try Compiler.compile(y, .inference, context: Context(threads: 1))
            #expect(throws: KilnError.self) { try one.run(threads: 2) }
            try one.run()
            let expected = y.d
            let two = try Compiler.compile(y, .inference, context: Context(threads: 2))
            try two.run(threads: 1)
            #expect(y.d == expected)
            try two.run()
            #expect(y.d == expected)
        }
    }

    @Test func aPlanAboveTheMemoryBudgetIsRefusedBeforeAnythingIsAllocated() throws {
        try Parameters.isolated {
            let y = try Self.stem()
            let plan = try Compiler.plan([y], .inference)
            #expect(plan.arenaBytes > 1024)
            let error = #expect(throws: KilnError.self) {
                try Compiler.compile(y, .inference, context: Context(memoryBudget: plan.arenaBytes + plan.persistentBytes - 1))
            }
            #expect("\(error.map { "\($0)" } ?? "")".contains("memory budget"))
            _ = try Compiler.compile(y, .inference, context: Context(memoryBudget: plan.arenaBytes + plan.persistentBytes))
        }
    }

    /// Each context has its own registry and generator; the same definition in two fresh contexts starts from
    /// the same weights (nnabla's RandomState(313)), and the default context is left alone.
    @Test func isolatedContextsShareNeitherRegistryNorGenerator() throws {
        let before = Parameters.current(gradOnly: false).count
        func weights() throws -> [Float] {
            try Context.with(Context()) {
                _ = try Self.stem()
                #expect(Parameters.current().map(\.name) == ["stem/conv/W", "stem/conv/b"])
                return try #require(Parameters.get("stem/conv/W")).d
            }
        }
        let a = try weights(), b = try weights()
        #expect(a == b)
        #expect(a == NumpyRandom(seed: 313).uniform(-1, 1, count: 0) + a)   // drawn, not all zero
        #expect(a.contains { $0 != 0 })
        #expect(Parameters.current(gradOnly: false).count == before)
    }

    /// nnabla's flags map to plans in one place; the nnabla-shaped API takes its precision from the context.
    @Test func nnablaFlagsResolveOnceAndForwardFollowsTheContextsPrecision() throws {
        let lean = CompileOptions.resolved(.forward(clearBuffer: false, clearNoNeedGrad: true), precision: .float)
        #expect(lean.mode == .training && lean.options.clearBuffer && lean.options.clearNoNeedGrad && !lean.options.recompute)
        let kept = CompileOptions.resolved(.forward(clearBuffer: false, clearNoNeedGrad: false), precision: .float)
        #expect(kept.mode == .training && !kept.options.clearBuffer && !kept.options.clearNoNeedGrad)
        let inference = CompileOptions.resolved(.forward(clearBuffer: true, clearNoNeedGrad: false), precision: .half)
        #expect(inference.mode == .inference && inference.options.clearBuffer && inference.options.precision == .half)
        let update = CompileOptions.resolved(.update(clearBuffer: false), precision: .float, recompute: true)
        #expect(update.mode == .training && !update.options.clearBuffer && !update.options.clearNoNeedGrad)
        let evaluation = CompileOptions.resolved(.evaluate(clearBuffer: true), precision: .float)
        #expect(evaluation.mode == .inference && evaluation.options.clearNoNeedGrad)

        try Parameters.isolated {
            let y = try Self.stem()
            try Context.with({ $0.precision = .half }) { try y.forward(clearBuffer: true) }
            let plans = y.planCache.values.map { $0.executable.plan }
            #expect(plans.count == 1 && plans.first?.options.precision == .half)
        }
    }
}
