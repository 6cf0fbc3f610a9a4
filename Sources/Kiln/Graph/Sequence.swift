import Foundation

/// Creation order of variables and function nodes. Plans sort by it so that compiling the same graph twice
/// gives the same schedule, whatever the addresses of the objects.
enum CreationSequence {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var next = 0

    static func take() -> Int {
        lock.lock()
        defer { lock.unlock() }
        next += 1
        return next
    }
}
