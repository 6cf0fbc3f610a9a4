import KilnCore
import KilnKernels
import KilnGraph

/// Lowers a graph into a `Plan` and binds it into an `Executable`.
///
/// Stages, each in its own file: collect the nodes behind the roots (GraphCollector), order them
/// (Schedule), join convolution epilogues in inference plans (Fusion), append backward steps for training (Autodiff, here in `lower`, recomputing cheap values if asked: Recompute), derive buffer lifetimes
/// (Liveness), place buffers in one arena (MemoryPlanner), then bind kernels (Executable). Nothing is
/// planned for values outside the arena: inputs, parameters and their gradients, requested outputs and
/// persistent variables keep their own storage so that users and solvers can read and write them.
public enum Compiler {
    /// The plan alone (no memory is allocated): what `kiln plan` prints.
    public static func plan(_ outputs: [Variable], _ mode: PlanMode = .inference,
                            options: CompileOptions = CompileOptions(), context: Context = .current) throws -> Plan {
        try lower(outputs, mode, options, context).plan
    }

    /// Lowers for `context`: kernels size their workspaces for its threads, and the arena must fit its budget.
    package static func lower(_ roots: [Variable], _ mode: PlanMode, _ options: CompileOptions, _ context: Context) throws -> Lowered {
        var lowered = try Threads.with(context.threads) { try lower(roots, mode, options) }
        lowered.plan.threads = context.threads
        if let budget = context.memoryBudget, lowered.plan.arenaBytes > budget {
            throw KilnError.planFailed("the plan's arena needs \(lowered.plan.arenaBytes) bytes, above the memory budget of \(budget) bytes")
        }
        return lowered
    }

    package struct Lowered {
        package var plan: Plan
        package var bindings: PlanBindings
    }

    static func lower(_ roots: [Variable], _ mode: PlanMode, _ options: CompileOptions) throws -> Lowered {
        for r in roots { try r.takePendingError() }
        let nodes = Schedule.order(GraphCollector.nodes(from: roots))
        var b = PlanBuilder(mode: mode, options: options, roots: roots)
        for step in Fusion.steps(nodes, mode: mode, options: options, roots: roots) {
            for n in step.nodes { for v in n.inputs { try v.takePendingError() } }
            if let fused = step.fused { try b.addFused(step.nodes, fused) } else { try b.addForward(step.nodes[0]) }
        }
        let forwardCount = b.steps.count
        guard mode == .training else { return b.finish(forwardStepCount: forwardCount) }
        guard options.recompute && options.clearBuffer else {
            try b.addBackward(nodes)
            return b.finish(forwardStepCount: forwardCount)
        }
        // Keeping every value, then recomputing with each way of sharing, from the fewest steps to the most:
        // a plan with more steps is taken only for an arena at least 5% smaller.
        var best: Lowered? = nil
        for sharing in [nil] + Recompute.Sharing.allCases.map(Optional.some) {
            var candidate = b
            if let sharing { candidate.planRecompute(nodes, sharing: sharing) }
            try candidate.addBackward(nodes)
            let lowered = candidate.finish(forwardStepCount: forwardCount)
            if let kept = best, Double(lowered.plan.arenaBytes) > 0.95 * Double(kept.plan.arenaBytes) { continue }
            best = lowered
        }
        guard let best else { throw KilnError.planFailed("no plan was lowered") }
        return best
    }
}

/// How each step's buffers map onto its function's slots, and which variables own external buffers.
package struct PlanBindings {
    package enum External {
        case data(Variable)
        case grad(Variable)
    }

    package struct StepSlots {
        package var node: FunctionNode?
        /// Forward: buffer per function input / output. Backward: data buffers where read, else nil.
        package var inputData: [Int?] = []
        package var outputData: [Int?] = []
        package var outputGrads: [Int] = []
        package var inputGrads: [Int?] = []
        package var accumulate: [Bool] = []
        /// The function that runs a fused step in place of `node`'s own.
        package var fused: (any Function)?
    }

    package var steps: [StepSlots] = []
    package var externals: [Int: External] = [:]
    /// Variables whose value lives in an arena buffer (for `d` after a run).
    package var arenaVariables: [(buffer: Int, variable: WeakVariable, isGrad: Bool)] = []
    /// Root gradients filled by seed steps.
    var seeds: [Int] = []
}
