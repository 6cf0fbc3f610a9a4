import Dispatch
import KilnCompiler
import KilnCore
import KilnGraph
import KilnKernels

/// A plan bound to memory: one arena allocated here, kernels built here, nothing allocated while it runs.
public final class Executable {
    public let plan: Plan
    /// The memory of every transient buffer. Arena views handed to variables share it (not the executable),
    /// so that a variable read after the executable is gone stays valid and nothing forms a cycle.
    let storage: Arena
    var arena: UnsafeMutableRawPointer { storage.base }
    fileprivate var kernels: [Kernel] = []
    /// External arrays, retained so that the addresses bound into kernels stay valid.
    private var retained: [NDArray] = []
    fileprivate let seedBox = SeedBox()
    /// Arena views handed to variables after a run, made once here.
    private var views: [(view: ArenaView, variable: WeakVariable, isGrad: Bool, last: Int)] = []
    /// Parameters whose gradient the backward phase writes (their `gradWritten` is set after a run).
    private var writtenGrads: [WeakVariable] = []
    /// Variables whose own storage a step writes (requested outputs, gradients), with that step: after a run
    /// covering it, the variable's own value is the current one, not what another plan's arena left.
    private var ownStorageWrites: [(variable: WeakVariable, isGrad: Bool, step: Int)] = []
    public private(set) var runs = 0
    /// Distributed training plans: the memory of every gradient bucket (`Plan.gradientBuckets`), one region
    /// that the parameters' gradient arrays view, and each bucket's values in it.
    private var gradientRegion: GradientRegion?
    public private(set) var gradientBucketValues: [UnsafeMutableBufferPointer<Float>] = []
    /// Per step: the buckets whose last gradient it writes.
    private var bucketsReadyAfter: [[Int]] = []

    init(plan: Plan, bindings: PlanBindings) throws {
        self.plan = plan
        storage = Arena(bytes: plan.arenaBytes)
        // Kernels size their thread split when they are built: build them for the plan's threads.
        try Threads.with(plan.threads) { try bind(bindings) }
    }

    private func bind(_ bindings: PlanBindings) throws {
        let plan = self.plan
        try bindGradientBuckets(bindings)

        var pointers = [UnsafeMutableRawPointer?](repeating: nil, count: plan.buffers.count)
        for b in plan.buffers {
            if let off = b.offset { pointers[b.id] = arena + off; continue }
            guard let ext = bindings.externals[b.id] else { continue }
            let array: NDArray
            switch ext {
            case .data(let v): array = v.data
            case .grad(let v):
                array = v.grad
                if v.parent == nil { writtenGrads.append(WeakVariable(value: v)) }
            }
            retained.append(array)
            pointers[b.id] = array.raw
        }
        for (s, step) in plan.steps.enumerated() {
            for b in Set(step.outputs) {
                switch bindings.externals[b] {
                case .data(let v)?: ownStorageWrites.append((WeakVariable(value: v), false, s))
                case .grad(let v)?: ownStorageWrites.append((WeakVariable(value: v), true, s))
                case nil: break
                }
            }
        }
        func tensor(_ id: Int) throws -> Tensor {
            guard let p = pointers[id] else { throw KilnError.planFailed("buffer \(plan.buffers[id].name) has no storage") }
            return Tensor(p, plan.buffers[id].type)
        }

        for (s, step) in plan.steps.enumerated() {
            let slots = bindings.steps[s]
            let ws = try step.workspace.map { try tensor($0).raw }
            // Half-precision plans: kernels see float16 buffers as float32 copies in the step's staging buffer.
            var stagedAt: [Int: UnsafeMutableRawPointer] = [:]
            var loads: [HalfCopy] = [], stores: [HalfCopy] = []
            if let staging = step.staging {
                let base = try tensor(staging).raw
                for v in step.staged {
                    let copy = HalfCopy(half: try tensor(v.buffer).raw.assumingMemoryBound(to: Float16.self),
                                        float: (base + v.offset).assumingMemoryBound(to: Float.self),
                                        count: plan.buffers[v.buffer].type.count)
                    stagedAt[v.buffer] = base + v.offset
                    if v.load { loads.append(copy) }
                    if v.store { stores.append(copy) }
                }
            }
            let bound = { [stagedAt] (id: Int) throws -> Tensor in
                guard let p = stagedAt[id] else { return try tensor(id) }
                return Tensor(p, TensorType(plan.buffers[id].type.shape, .float32))
            }
            let kernel: Kernel
            switch step.kind {
            case .seed:
                let t = try tensor(step.outputs[0])
                let box = seedBox
                kernel = {
                    guard let v = box.value else { return }
                    if t.type.dtype == .float16 {
                        t.raw.assumingMemoryBound(to: Float16.self).update(repeating: Float16(v), count: t.count)
                    } else {
                        Elementwise.fill(t.count, t.f, v)
                    }
                }
            case .zero:
                let t = try tensor(step.outputs[0])
                let bytes = t.type.byteCount
                kernel = { t.raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
            case .forward, .recompute:
                guard let n = slots.node else { throw KilnError.planFailed("step \(s) has no function") }
                let b = ForwardBinding(inputs: try slots.inputData.map { try bound($0!) },
                                       outputs: try slots.outputData.map { try bound($0!) }, workspace: ws,
                                       recomputing: step.kind == .recompute)
                kernel = try (slots.fused ?? n.function).makeForward(b)
            case .backward:
                guard let n = slots.node else { throw KilnError.planFailed("step \(s) has no function") }
                let b = BackwardBinding(
                    inputTypes: slots.types?.inputs ?? n.inputs.map { $0.type },
                    outputTypes: slots.types?.outputs ?? n.outputTypes,
                    inputs: try slots.inputData.map { try $0.map(bound) },
                    outputs: try slots.outputData.map { try $0.map(bound) },
                    outputGrads: try slots.outputGrads.map(bound),
                    inputGrads: try slots.inputGrads.map { try $0.map(bound) },
                    accumulate: slots.accumulate, workspace: ws)
                kernel = try (slots.fused ?? n.function).makeBackward(b)
            }
            let rounds = try step.rounded.map { id in
                HalfRounding(values: try tensor(id).f, count: plan.buffers[id].type.count)
            }
            if loads.isEmpty && stores.isEmpty && rounds.isEmpty {
                kernels.append(kernel)
            } else {
                kernels.append {
                    for c in loads { c.widen() }
                    try kernel()
                    for c in stores { c.narrow() }
                    for r in rounds { r.apply() }
                }
            }
        }

        var last = [Int: Int]()
        for l in plan.lifetimes { last[l.buffer] = l.last }
        for (buffer, variable, isGrad) in bindings.arenaVariables {
            // Padded planes are no tensor a variable can view (and such a value is gone before the plan ends).
            guard let p = pointers[buffer], let l = last[buffer], plan.buffers[buffer].layout == nil else { continue }
            views.append((ArenaView(owner: storage, pointer: p, dtype: plan.buffers[buffer].type.dtype,
                                    codes: plan.buffers[buffer].codes), variable, isGrad, l))
        }
    }


    /// Moves the parameters' gradients into one region laid out as the plan's buckets say, before the kernels
    /// take their addresses. One bucketed plan per set of parameters: a second one compiled over the same
    /// parameters moves their gradients into its own region, and the first would then write gradients no
    /// solver reads (updaters compile one training plan, so this does not arise in training).
    private func bindGradientBuckets(_ bindings: PlanBindings) throws {
        bucketsReadyAfter = [[Int]](repeating: [], count: plan.steps.count)
        guard let lastBucket = plan.gradientBuckets.last else { return }
        let region = GradientRegion(bytes: lastBucket.offset + lastBucket.bytes)
        for (k, bucket) in plan.gradientBuckets.enumerated() {
            for (b, offset) in zip(bucket.buffers, bucket.offsets) {
                guard case .grad(let v)? = bindings.externals[b], v.parent == nil else {
                    throw KilnError.planFailed("gradient bucket \(k) holds \(plan.buffers[b].name), which is not a parameter's gradient")
                }
                let view = NDArray(viewing: region.base + bucket.offset + offset, type: plan.buffers[b].type, owner: region)
                try v.moveGrad(into: view)
            }
            let start = (region.base + bucket.offset).assumingMemoryBound(to: Float.self)
            gradientBucketValues.append(UnsafeMutableBufferPointer(start: start, count: bucket.bytes / MemoryLayout<Float>.size))
            bucketsReadyAfter[bucket.readyAfterStep].append(k)
        }
        gradientRegion = region
    }

    public enum Phase { case all, forward, backward }

    /// Runs the plan (or one phase of a training plan). `seed` fills the roots' gradients before backward;
    /// nil keeps whatever the roots' `.g` holds, as nnabla's `backward(grad=None)`. The kernels use the
    /// plan's threads, or `threads` when given: fewer than the plan was compiled for (the workspaces have no
    /// room for more).
    ///
    /// `buckets` (distributed training plans) hears of each gradient bucket as soon as backward has written
    /// it, and of every backward step after that, so that its all-reduce runs while backward goes on.
    public func run(_ phase: Phase = .all, seed: Float? = 1, threads: Int? = nil,
                    buckets: GradientBucketObserver? = nil) throws {
        let n = threads ?? plan.threads
        guard n >= 1 && n <= plan.threads else {
            throw KilnError.planFailed("a plan compiled for \(plan.threads) thread(s) cannot run on \(n)")
        }
        try Threads.with(n) { try runSteps(phase, seed: seed, buckets: buckets) }
    }

    private func runSteps(_ phase: Phase, seed: Float?, buckets: GradientBucketObserver?) throws {
        seedBox.value = seed
        let range: Range<Int>
        switch phase {
        case .all: range = 0..<plan.steps.count
        case .forward: range = 0..<plan.forwardStepCount
        case .backward: range = plan.forwardStepCount..<plan.steps.count
        }
        for i in views.indices { views[i].view.isValid = false }
        if let buckets, !gradientBucketValues.isEmpty {
            var started = false
            for i in range {
                try kernels[i]()
                let ready = bucketsReadyAfter[i]
                if !ready.isEmpty {
                    for k in ready { try buckets.bucketReady(k, gradientBucketValues[k]) }
                    started = true
                } else if started {
                    try buckets.backwardStepDone()
                }
            }
        } else {
            for i in range { try kernels[i]() }
        }
        runs += 1
        if plan.mode == .training && phase != .forward {
            for w in writtenGrads { w.value?.gradWritten = true }
        }
        for w in ownStorageWrites where range.contains(w.step) {
            if w.isGrad { w.variable.value?.gradView = nil } else { w.variable.value?.dataView = nil }
        }
        // Values still in place at the end of what ran can be read through their variables.
        let end = range.upperBound - 1
        for i in views.indices {
            let v = views[i]
            guard let variable = v.variable.value else { continue }
            if v.last >= end {
                v.view.isValid = true
                if v.isGrad { variable.gradView = v.view } else { variable.dataView = v.view }
            }
        }
    }
}

extension Executable {
    /// Runs the whole plan `iterations` times and returns the total seconds spent in each step, for finding
    /// where time goes (`kiln bench --profile`).
    public func profile(iterations: Int, seed: Float? = 1) throws -> [Double] {
        var totals = [Double](repeating: 0, count: plan.steps.count)
        seedBox.value = seed
        try Threads.with(plan.threads) {
        for _ in 0..<max(iterations, 1) {
            for i in kernels.indices {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try kernels[i]()
                totals[i] += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            }
        }
        }
        return totals
    }
}

/// Hears of a distributed training plan's gradient buckets while backward runs (`Executable.run`).
public protocol GradientBucketObserver: AnyObject {
    /// Backward has written the last gradient of bucket `index`: the plan does not touch `values` again in
    /// this run.
    func bucketReady(_ index: Int, _ values: UnsafeMutableBufferPointer<Float>) throws
    /// A backward step after the first bucket was ready has finished (a chance to progress collectives).
    func backwardStepDone() throws
}

/// The memory of a plan's gradient buckets: the parameters' gradient arrays view it, and keep it alive.
final class GradientRegion {
    let base: UnsafeMutableRawPointer
    init(bytes: Int) {
        base = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: Plan.alignment)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: max(bytes, 1))
    }
    deinit { base.deallocate() }
}

/// One float16 buffer and its float32 staging copy.
struct HalfCopy {
    let half: UnsafeMutablePointer<Float16>
    let float: UnsafeMutablePointer<Float>
    let count: Int

    func widen() { HalfConversion.widen(count, half, float) }
    func narrow() { HalfConversion.narrow(count, float, half) }
}

/// A float32 buffer holding float16 values, rounded after the step that writes it.
struct HalfRounding {
    let values: UnsafeMutablePointer<Float>
    let count: Int

    func apply() { HalfConversion.round(count, values) }
}

final class SeedBox {
    var value: Float? = 1
}
