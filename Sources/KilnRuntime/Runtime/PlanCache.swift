import KilnGraph
import KilnCompiler

/// Plans compiled for a root variable, reused while the graph behind it is unchanged.
///
/// The key holds everything that decides a plan: the mode, the options and what the plan takes from its
/// context (threads size the convolution workspaces; the memory budget decides whether it compiles at all).
struct PlanCacheKey: Hashable {
    var mode: PlanMode
    var options: CompileOptions
    var threads: Int
    var memoryBudget: Int?

    init(_ mode: PlanMode, _ options: CompileOptions, _ context: Context) {
        self.mode = mode
        self.options = options
        threads = context.threads
        memoryBudget = context.memoryBudget
    }
}

struct CachedPlan {
    /// Identity and shapes of every node behind the root when the plan was compiled.
    var fingerprint: [Int]
    var executable: Executable
}
