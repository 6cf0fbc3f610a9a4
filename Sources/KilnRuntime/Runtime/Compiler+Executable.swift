import KilnGraph
import KilnCompiler

/// The entry points that bind a lowered plan into an `Executable`. They live in KilnRuntime because an
/// `Executable` does: KilnCompiler only lowers graphs into plans and never depends on the runtime.
extension Compiler {
    /// Compiles the graph behind `outputs` for `context` (its threads and memory budget).
    public static func compile(_ outputs: [Variable], _ mode: PlanMode = .inference,
                               options: CompileOptions = CompileOptions(), context: Context = .current) throws -> Executable {
        let lowered = try lower(outputs, mode, options, context)
        return try Executable(plan: lowered.plan, bindings: lowered.bindings)
    }

    public static func compile(_ output: Variable, _ mode: PlanMode = .inference,
                               options: CompileOptions = CompileOptions(), context: Context = .current) throws -> Executable {
        try compile([output], mode, options: options, context: context)
    }
}
