import KilnCore
import KilnKernels
import KilnGraph

/// Lowers a graph into a `Plan` (the passes of `Pipeline`) and binds it into an `Executable`.
///
/// Nothing is planned for values outside the arena: inputs, parameters and their gradients, requested
/// outputs and persistent variables keep their own storage so that users and solvers can read and write them.
public enum Compiler {
    /// The plan alone (no memory is allocated): what `kiln plan` prints.
    public static func plan(_ outputs: [Variable], _ mode: PlanMode = .inference,
                            options: CompileOptions = CompileOptions(), context: Context = .current) throws -> Plan {
        try lower(outputs, mode, options, context).plan
    }

    /// Lowers for `context`: kernels size their workspaces for its threads, and the arena must fit its budget.
    package static func lower(_ roots: [Variable], _ mode: PlanMode, _ options: CompileOptions, _ context: Context) throws -> Lowered {
        try OpenBLAS.require()
        var lowered = try Threads.with(context.threads) { try Pipeline.lower(roots, mode, options) }
        lowered.plan.threads = context.threads
        // The budget covers everything the plan holds: its arena and its persistent buffers (parameters,
        // inputs, outputs, gradients, solver state), since a file can declare huge ones of each.
        let plan = lowered.plan
        let total = try (CheckedInt(plan.arenaBytes) + plan.persistentBytes).get("the plan's arena and persistent buffers")
        if let budget = context.memoryBudget, total > budget {
            throw KilnError.planFailed("the plan needs \(total) bytes (arena \(plan.arenaBytes), persistent buffers \(plan.persistentBytes)), above the memory budget of \(budget) bytes (Context.memoryBudget; `--max-memory` on the command line)")
        }
        return lowered
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
        /// A fused backward step's input and output types (the fused function's, not `node`'s).
        package var types: (inputs: [TensorType], outputs: [TensorType])?
    }

    package var steps: [StepSlots] = []
    package var externals: [Int: External] = [:]
    /// Variables whose value lives in an arena buffer (for `d` after a run).
    package var arenaVariables: [(buffer: Int, variable: WeakVariable, isGrad: Bool)] = []
    /// Root gradients filled by seed steps.
    var seeds: [Int] = []
}
