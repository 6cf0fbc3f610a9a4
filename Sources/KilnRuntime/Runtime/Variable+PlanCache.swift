import KilnGraph

/// The plans and the last training plan of one root variable, kept in its `runtimeCache` (see there for why
/// the slot is opaque). Made on the first write; a variable that never ran has none.
final class PlanCache {
    /// Plans compiled with the variable as the root, keyed by mode and options.
    var plans: [PlanCacheKey: CachedPlan] = [:]
    /// The training plan whose forward phase ran last, for `backward`.
    var lastTraining: Executable?
}

extension Variable {
    private var runtimePlanCache: PlanCache {
        if let c = runtimeCache as? PlanCache { return c }
        let c = PlanCache()
        runtimeCache = c
        return c
    }

    /// Plans compiled with this variable as the root, keyed by mode and options.
    var planCache: [PlanCacheKey: CachedPlan] {
        get { (runtimeCache as? PlanCache)?.plans ?? [:] }
        set { runtimePlanCache.plans = newValue }
    }

    /// The training plan whose forward phase ran last, for `backward`.
    var lastTraining: Executable? {
        get { (runtimeCache as? PlanCache)?.lastTraining }
        set { runtimePlanCache.lastTraining = newValue }
    }
}
