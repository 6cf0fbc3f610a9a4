/// Plans compiled for a root variable, reused while the graph behind it is unchanged.
struct PlanCacheKey: Hashable {
    var mode: PlanMode
    var options: CompileOptions
}

struct CachedPlan {
    /// Identity and shapes of every node behind the root when the plan was compiled.
    var fingerprint: [Int]
    var executable: Executable
}
