import Testing
@testable import Kiln
@testable import KilnRuntime

/// Plans built from small graphs: layouts verify, reuse happens, values and gradients are right.
struct PlanTests {
    /// x -> relu -> a; a -> relu -> b; a -> relu -> c (two roots sharing a).
    func branchingGraph() throws -> (x: Variable, b: Variable, c: Variable) {
        let x = try Variable(shape: [4, 8], needGrad: true, name: "x")
        let a = try F.relu(x)
        return (x, try F.relu(a), try F.relu(a))
    }

    @Test func inferencePlanVerifiesAndComputes() throws {
        let x = try Variable(shape: [2, 1000], name: "x")
        var h = x
        for _ in 0..<10 { h = try F.relu(h) }
        let exe = try Compiler.compile(h, .inference)
        try exe.plan.verify()
        // A chain needs two live buffers at a time, not ten.
        #expect(exe.plan.arenaBytes <= 2 * 8000 + 2 * Plan.alignment)
        #expect(exe.plan.naiveBytes >= 9 * 8000)
        let values = (0..<2000).map { Float($0 % 7) - 3 }
        try x.setData(values)
        try exe.run()
        #expect(h.d == values.map { max($0, 0) })
    }

    @Test func trainingAccumulatesGradientsOfSharedValues() throws {
        let (x, b, c) = try branchingGraph()
        let values = (0..<32).map { Float($0) - 10.5 }
        try x.setData(values)
        x.zeroGrad()
        let exe = try Compiler.compile([b, c], .training)
        try exe.plan.verify()
        try exe.run()
        // d(b + c)/dx = 2 where x > 0, else 0 (each root seeded with ones).
        #expect(x.g == values.map { $0 > 0 ? 2 : 0 })
        #expect(x.gradWritten)
    }

    @Test func parameterGradientsAccumulateAcrossRunsUntilZeroed() throws {
        let (x, b, _) = try branchingGraph()
        try x.setData([Float](repeating: 1, count: 32))
        x.zeroGrad()
        let exe = try Compiler.compile(b, .training)
        try exe.run()
        try exe.run()
        #expect(x.g == [Float](repeating: 2, count: 32))
        x.zeroGrad()
        #expect(!x.gradWritten)
        try exe.run()
        #expect(x.g == [Float](repeating: 1, count: 32))
    }

    @Test func clearBufferOnAndOffGiveIdenticalResults() throws {
        let (x, b, c) = try branchingGraph()
        try x.setData((0..<32).map { Float($0) * 0.37 - 5 })
        var results: [[Float]] = []
        for clear in [true, false] {
            x.zeroGrad()
            let exe = try Compiler.compile([b, c], .training, options: CompileOptions(clearBuffer: clear))
            try exe.plan.verify()
            try exe.run()
            results.append(x.g + b.d + c.d)
        }
        #expect(results[0] == results[1])
    }

    @Test func forwardThenBackwardOnVariables() throws {
        let x = try Variable(shape: [3], needGrad: true)
        let y = try F.relu(F.relu(x))
        try x.setData([Float]([-1, 0.5, 2]))
        x.zeroGrad()
        try y.forward()
        #expect(y.d == [0, 0.5, 2])
        try y.backward()
        #expect(x.g == [0, 1, 1])
    }

    @Test func backwardWithoutForwardIsAnError() throws {
        let x = try Variable(shape: [3], needGrad: true)
        let y = try F.relu(x)
        #expect(throws: KilnError.self) { try y.backward() }
    }

    @Test func intermediateValuesReadableWithoutClearBuffer() throws {
        let x = try Variable(shape: [2])
        let a = try F.relu(x)
        let b = try F.relu(a)
        try x.setData([Float]([-3, 4]))
        try b.forward(clearBuffer: false)
        #expect(a.d == [0, 4])
    }

    @Test func wrongDataCountSurfacesAtForward() throws {
        let x = try Variable(shape: [4])
        let y = try F.relu(x)
        x.d = [1, 2]
        #expect(throws: KilnError.self) { try y.forward() }
    }

    @Test func planIsCachedUntilTheGraphChanges() throws {
        let x = try Variable(shape: [3])
        let y = try F.relu(x)
        let e1 = try y.executable(.inference, CompileOptions())
        let e2 = try y.executable(.inference, CompileOptions())
        #expect(e1 === e2)
    }

    @Test func dumpAndJSONCarryTheContractFigures() throws {
        let (_, b, c) = try branchingGraph()
        let plan = try Compiler.plan([b, c], .training)
        let text = plan.dump()
        for key in ["arena_bytes", "lower_bound_bytes", "naive_bytes", "persistent_bytes", "memory map"] {
            #expect(text.contains(key))
        }
        let j = plan.json()
        #expect(j["arena_bytes"]?.int == plan.arenaBytes)
        #expect(j["steps"]?.array?.count == plan.steps.count)
        #expect(j["steps"]?.array?.first?["op"]?.string == "ReLU")
    }

    /// A chain of 30,000 functions (deeper than the stack allows recursion for) is compiled and released.
    @Test func deepChainsCompileAndRelease() throws {
        try autoreleasepoolless {
            let x = try Variable(shape: [2], needGrad: true)
            var h = x
            for _ in 0..<30_000 { h = try F.relu(h) }
            let plan = try Compiler.plan([h], .training, options: CompileOptions(recompute: false))
            #expect(plan.steps.count == 60_001)
            try plan.verify()
            // Recomputation keeps one ReLU output in 17 (`Recompute.maximumSteps`) and rebuilds the others
            // once, except the root: 30,000 = 17 * 1764 + 12.
            let rebuilt = try Compiler.plan([h], .training)
            #expect(rebuilt.steps.count == 60_001 + 1764 * 16 + 11)
            try rebuilt.verify()
        }
    }

    func autoreleasepoolless(_ body: () throws -> Void) rethrows { try body() }

    /// Executables (and their arenas) are freed when nothing holds them, even after variables took views.
    @Test func executablesAreFreed() throws {
        weak var weakExe: Executable?
        let x = try Variable(shape: [4])
        let a = try F.relu(x)
        let b = try F.relu(a)
        do {
            let exe = try Compiler.compile(b, .inference, options: CompileOptions(clearBuffer: false))
            try exe.run()
            weakExe = exe
        }
        #expect(weakExe == nil)
        #expect(a.d.count == 4) // the view keeps the arena alive
    }
}

/// Liveness as an event stream on small graphs, written out by hand from the schedule.
struct LivenessEventTests {
    @Test func inferenceChainAllocatesSharesAndFrees() throws {
        // x -> Tanh -> ReLU -> Sigmoid (root). Tanh's output is transient, ReLU overwrites it in place, and
        // the root lives outside the arena.
        let x = try Variable(shape: [8], name: "x")
        let a = try F.tanh(x)
        a.name = "a"
        let b = try F.relu(a)
        b.name = "b"
        let y = try F.sigmoid(b)
        let plan = try Compiler.plan([y], .inference)
        #expect(Liveness.events(plan).map { "\($0)" } == ["0 alloc a", "1 share b <- a", "2 free b"])
    }

    @Test func trainingKeepsWhatBackwardReads() throws {
        // loss = sum(relu(x * 2)). Forward: MulScalar(0) ReLU(1) Sum(2); backward: seed(3), Sum(4), ReLU(5),
        // MulScalar(6). ReLU's backward reads its output r, so r lives until step 5; m (MulScalar's output)
        // dies at ReLU in place.
        let x = try Variable(shape: [4], needGrad: true, name: "x")
        let m = try F.mulScalar(x, val: 2)
        m.name = "m"
        let r = try F.relu(m)
        r.name = "r"
        let loss = try F.sum(r)
        let plan = try Compiler.plan([loss], .training)
        #expect(plan.steps.map { $0.function } == ["MulScalar", "ReLU", "Sum", "Seed", "Sum", "ReLU", "MulScalar"])
        let events = Liveness.events(plan).map { "\($0)" }
        #expect(events == ["0 alloc m", "1 share r <- m", "4 alloc grad:r", "5 share grad:m <- grad:r", "5 free r",
                           "6 free grad:m"])
    }
}

/// Model parameters that take no gradient (BN's running statistics) are still parameters: in plans, in
/// pictures and in saved graph files, not inputs to feed.
struct ParameterKindTests {
    @Test func runningStatisticsAreParameters() throws {
        try Parameters.isolated {
            let model = try Zoo.resnet20.build(batchSize: 2, training: false)
            let plan = try Compiler.plan([model.prediction], .inference)
            let stats = plan.buffers.filter { $0.name.hasSuffix("bn/mean") || $0.name.hasSuffix("bn/var") }
            #expect(stats.count == 2 * 21)
            #expect(stats.allSatisfy { $0.kind == .parameter })
            #expect(plan.buffers.filter { $0.kind == .input }.map { $0.name } == ["x"])
            let reloaded = try GraphFile.load(json: GraphFile.save([model.prediction], includeData: false))
            let replanned = try Compiler.plan(reloaded.outputs, .inference)
            #expect(replanned.buffers.filter { $0.kind == .input }.count == 1)
            #expect(replanned.buffers.filter { $0.kind == .parameter }.count == plan.buffers.filter { $0.kind == .parameter }.count)
        }
    }
}
