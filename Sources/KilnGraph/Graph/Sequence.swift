import Synchronization

/// Creation order of variables and function nodes. Plans sort by it so that compiling the same graph twice
/// gives the same schedule, whatever the addresses of the objects.
enum CreationSequence {
    private static let last = Atomic<Int>(0)

    static func take() -> Int { last.add(1, ordering: .relaxed).newValue }
}
