import Foundation
import Synchronization

/// Everything outside a graph that decides how it is built, compiled and run: nnabla's context plus the
/// state nnabla keeps in globals (the parameter registry and its scope, the random generators).
///
/// One value, passed explicitly where it matters: `Compiler.compile(_:_:options:context:)` compiles for a
/// context, and a plan records what it took from it (threads, memory budget), so a plan cache keyed by them
/// never hands a plan made for one context to another. The nnabla-shaped API (`Parameters.scope`,
/// `GlobalRandom.seed`, `Variable.forward`, `PF`) reads `Context.current`: the context installed for the
/// running task by `Context.with`, or else the process's default, which `Context.setDefault` changes.
///
/// The registry and the generator are shared objects (copies of a context share them, as nnabla's global
/// dictionary is shared); each locks its own state.
public struct Context: Sendable {
    /// Threads Kiln's kernels split work over. Plans are compiled for this count (convolution workspaces hold
    /// one slice per thread) and always run with the count they were compiled for.
    public var threads: Int {
        get { _threads }
        set { _threads = max(1, newValue) }
    }
    private var _threads = 1

    /// How plans compiled through the nnabla-shaped API store activations (nnabla's `type_config`); an
    /// explicit `CompileOptions` says it for itself.
    public var precision: Precision = .float

    /// The largest arena a plan may plan, in bytes; nil for no limit. A plan above it is refused at compile
    /// time, before any memory is allocated, rather than aborting the process when the allocation fails.
    /// Defaults to three quarters of the machine's physical memory.
    public var memoryBudget: Int?

    /// Three quarters of the machine's physical memory (at least 1 GiB when it cannot be read).
    public static let physicalMemoryBudget: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        let physical = pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size) : (partialValue: 1 << 30, overflow: false)
        return physical.overflow ? Int.max / 4 * 3 : max(physical.partialValue / 4 * 3, 1 << 30)
    }()

    /// The parameter registry and its scope (nnabla's `nn.get_parameters`, `nn.parameter_scope`).
    public var parameters: ParameterStore

    /// The generator parametric functions draw initial values from (nnabla's `nn.random.prng`).
    public var random: NumpyRandom

    /// The keys of Dropouts created with `seed = -1`, one after the other.
    public var dropoutKeys: KeySequence

    /// A fresh context: an empty registry, the generator seeded 313 as in a new nnabla process, one thread.
    public init(threads: Int = 1, precision: Precision = .float, memoryBudget: Int? = Context.physicalMemoryBudget) {
        self.parameters = ParameterStore()
        self.random = NumpyRandom(seed: 313)
        self.dropoutKeys = KeySequence()
        self.precision = precision
        self.memoryBudget = memoryBudget
        self.threads = threads
    }

    /// This context with a fresh registry, generator and key sequence, and the same settings.
    public func isolated() -> Context {
        Context(threads: threads, precision: precision, memoryBudget: memoryBudget)
    }

    @TaskLocal private static var installed: Context?
    private static let processDefault = Mutex(Context())

    /// The context of the running task: the one installed by `with`, else the process's default.
    public static var current: Context { installed ?? processDefault.withLock { $0 } }

    /// Changes the process's default context (what `kiln` does with its `--threads` option).
    public static func setDefault(_ change: (inout Context) -> Void) {
        processDefault.withLock { change(&$0) }
    }

    /// Runs `body` with `context` as the running task's context.
    public static func with<T>(_ context: Context, _ body: () throws -> T) rethrows -> T {
        try $installed.withValue(context) { try body() }
    }

    /// Runs `body` with the current context changed by `change` for the running task.
    public static func with<T>(_ change: (inout Context) -> Void, _ body: () throws -> T) rethrows -> T {
        var c = current
        change(&c)
        return try with(c, body)
    }
}

/// A thread-safe counter handing out one number after another (the keys of unseeded Dropouts).
public final class KeySequence: Sendable {
    private let last = Atomic<UInt64>(0)

    public init() {}

    /// The next number: 1, 2, 3, ...
    public func next() -> UInt64 { last.add(1, ordering: .relaxed).newValue }
}
