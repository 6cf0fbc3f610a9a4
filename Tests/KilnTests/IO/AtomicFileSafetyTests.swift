import Foundation
import Testing
@testable import Kiln
@testable import KilnGraph

/// AtomicFile in a directory where someone else can plant files: symlinks at the temporary names Kiln could
/// choose or at the destination never redirect a write, failures leave nothing behind, and the temporary is
/// private while it is written. Serialized because one test sets the process umask.
@Suite(.serialized)
struct AtomicFileSafetyTests {
    static let victimText = "victim: must never change\n"

    /// A fresh directory and, outside it, a victim file that planted symlinks point at.
    struct Scene {
        let root: String, dir: String, outside: String, victim: String
        init(_ tag: String) throws {
            root = try trainingTempDir("atomic-\(tag)")
            dir = root + "/save"
            outside = root + "/outside"
            victim = outside + "/victim.txt"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
            try Data(AtomicFileSafetyTests.victimText.utf8).write(to: URL(fileURLWithPath: victim))
        }
        var victimText: String { (try? String(contentsOfFile: victim, encoding: .utf8)) ?? "<missing>" }
        func listing(_ d: String? = nil) -> Set<String> {
            Set((try? FileManager.default.contentsOfDirectory(atPath: d ?? dir)) ?? [])
        }
        func remove() { try? FileManager.default.removeItem(atPath: root) }
    }

    /// The file type bits and permission bits of the entry itself (a symlink is not followed).
    static func entry(_ path: String) -> (type: UInt32, mode: UInt32)? {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        return (UInt32(st.st_mode) & 0o170000, UInt32(st.st_mode) & 0o7777)
    }
    static let regular: UInt32 = 0o100000, symlink: UInt32 = 0o120000

    static func symlinkTarget(_ path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }

    static func text(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    @Test func symlinksAtEveryCandidateNameAreNeverFollowed() throws {
        let s = try Scene("planted")
        defer { s.remove() }
        // Every name but the last is taken: most by symlinks to the victim, some by dangling symlinks to a
        // file that would be created outside if a symlink were followed.
        let n = AtomicFile.maxTemporaryAttempts
        let names = (0..<n).map { ".out.json.tmp-planted\($0)" }
        let nowhere = s.outside + "/created-through-a-symlink"
        for (k, name) in names.dropLast().enumerated() {
            try FileManager.default.createSymbolicLink(atPath: s.dir + "/" + name,
                                                       withDestinationPath: k % 3 == 0 ? nowhere : s.victim)
        }
        var asked: [String] = []
        var written: String?
        try AtomicFile.write(Array("new content\n".utf8), to: s.dir + "/out.json", temporaryName: { target in
            asked.append(target)
            return names[asked.count - 1]
        }, afterWriting: { written = $0 })

        #expect(asked == Array(repeating: "out.json", count: n))     // every planted name was tried first
        #expect(written == s.dir + "/" + names[n - 1])                // the write went to the free name
        #expect(Self.text(s.dir + "/out.json") == "new content\n")
        #expect(Self.entry(s.dir + "/out.json")?.type == Self.regular)
        #expect(s.victimText == Self.victimText)
        #expect(!FileManager.default.fileExists(atPath: nowhere))
        #expect(s.listing(s.outside) == ["victim.txt"])
        // The planted symlinks are as they were; the free name was renamed away: no temporary remains.
        #expect(s.listing() == Set(names.dropLast()).union(["out.json"]))
        for (k, name) in names.dropLast().enumerated() {
            #expect(Self.symlinkTarget(s.dir + "/" + name) == (k % 3 == 0 ? nowhere : s.victim))
        }
    }

    @Test func everyCandidateNameTakenIsAClearErrorAndChangesNothing() throws {
        let s = try Scene("all-taken")
        defer { s.remove() }
        let n = AtomicFile.maxTemporaryAttempts
        let names = (0..<n).map { ".out.json.tmp-planted\($0)" }
        for name in names {
            try FileManager.default.createSymbolicLink(atPath: s.dir + "/" + name, withDestinationPath: s.victim)
        }
        try Data("old content\n".utf8).write(to: URL(fileURLWithPath: s.dir + "/out.json"))
        var asked = 0
        var message = ""
        do {
            try AtomicFile.write(Array("new content\n".utf8), to: s.dir + "/out.json", temporaryName: { _ in
                asked += 1
                return names[(asked - 1) % n]
            }, afterWriting: nil)
            Issue.record("the write succeeded although every temporary name was taken")
        } catch let e as KilnError {
            message = "\(e)"
        }
        #expect(asked == n)
        #expect(message.contains(s.dir + "/out.json"), "\(message)")
        #expect(message.contains("no free temporary file name") && message.contains("\(n) tries"), "\(message)")
        #expect(s.victimText == Self.victimText)
        #expect(Self.text(s.dir + "/out.json") == "old content\n")
        #expect(s.listing() == Set(names).union(["out.json"]))
    }

    @Test func productionNamesAreRandomAndRecognisedAsTemporaries() throws {
        let a = AtomicFile.randomTemporaryName(for: "checkpoint.json")
        let b = AtomicFile.randomTemporaryName(for: "checkpoint.json")
        #expect(a != b)
        for name in [a, b] {
            #expect(name.hasPrefix(".checkpoint.json.tmp-") && name.count == ".checkpoint.json.tmp-".count + 16, "\(name)")
            #expect(name.suffix(16).allSatisfy { "0123456789abcdef".contains($0) }, "\(name)")
            #expect(AtomicFile.isTemporaryName(name))
        }
        // A long destination name still gives a temporary within the usual 255-byte limit.
        let long = AtomicFile.randomTemporaryName(for: String(repeating: "é", count: 127))
        #expect(long.utf8.count <= 255 && AtomicFile.isTemporaryName(long))
        #expect(AtomicFile.isTemporaryName(".checkpoint.json.tmp-4242"))          // earlier versions' form
        for other in ["checkpoint.json", ".tmp-0123456789abcdef", "..tmp-0123456789abcdef", "x.tmp-0123456789abcdef",
                      ".x.tmp-0123456789ABCDEF", ".x.tmp-0123456789abcdeg", ".x.tmp-", ".x.tmp-12a", ".x.tmp-01234567890"] {
            #expect(!AtomicFile.isTemporaryName(other), "\(other)")
        }
    }

    @Test func symlinkAtTheDestinationIsReplacedAndItsTargetUntouched() throws {
        let s = try Scene("dest-link")
        defer { s.remove() }
        try FileManager.default.createSymbolicLink(atPath: s.dir + "/params.safetensors", withDestinationPath: s.victim)
        try AtomicFile.write("fresh\n", to: s.dir + "/params.safetensors")
        #expect(Self.entry(s.dir + "/params.safetensors")?.type == Self.regular)
        #expect(Self.text(s.dir + "/params.safetensors") == "fresh\n")
        #expect(s.victimText == Self.victimText)
        #expect(s.listing() == ["params.safetensors"])
    }

    @Test func symlinkedDirectoryInThePathIsFollowed() throws {
        let s = try Scene("dir-link")
        defer { s.remove() }
        try FileManager.default.createSymbolicLink(atPath: s.root + "/linked", withDestinationPath: s.dir)
        try AtomicFile.write("through the link\n", to: s.root + "/linked/out.txt")
        #expect(Self.entry(s.dir + "/out.txt")?.type == Self.regular)
        #expect(Self.text(s.dir + "/out.txt") == "through the link\n")
        #expect(s.listing() == ["out.txt"])
    }

    @Test func missingDirectoryFailsNamingThePathAndTheCause() throws {
        let s = try Scene("missing")
        defer { s.remove() }
        let target = s.dir + "/absent/out.json"
        let e = #expect(throws: KilnError.self) { try AtomicFile.write("x", to: target) }
        let message = e.map { "\($0)" } ?? ""
        #expect(message.contains(target) && message.contains(String(cString: strerror(ENOENT))), "\(message)")
        #expect(s.listing().isEmpty)

        // A regular file where a directory should be.
        try Data("plain\n".utf8).write(to: URL(fileURLWithPath: s.dir + "/file"))
        let e2 = #expect(throws: KilnError.self) { try AtomicFile.write("x", to: s.dir + "/file/out.json") }
        let message2 = e2.map { "\($0)" } ?? ""
        #expect(message2.contains(s.dir + "/file/out.json") && message2.contains(String(cString: strerror(ENOTDIR))),
                "\(message2)")
        #expect(s.listing() == ["file"])
        #expect(Self.text(s.dir + "/file") == "plain\n")
    }

    /// A directory the process may not write to: a mode 0555 directory for an ordinary user; the superuser
    /// ignores permission bits, so for it a directory of a file system that refuses new files.
    @Test func readOnlyDirectoryFailsNamingThePathAndTheCauseAndLeavesNothing() throws {
        let s = try Scene("read-only")
        defer {
            chmod(s.dir, 0o755)
            s.remove()
        }
        let dir: String
        if geteuid() == 0 {
            #if os(Linux)
            dir = "/sys"
            #else
            dir = "/System"
            #endif
        } else {
            #expect(chmod(s.dir, 0o555) == 0)
            dir = s.dir
        }
        let before = s.listing(dir)
        let target = dir + "/kiln-read-only-test.json"
        let e = #expect(throws: KilnError.self) { try AtomicFile.write("x", to: target) }
        let message = e.map { "\($0)" } ?? ""
        let causes = [EACCES, EPERM, EROFS].map { String(cString: strerror($0)) }
        #expect(message.contains(target) && causes.contains { message.contains($0) }, "\(message)")
        #expect(s.listing(dir) == before)
        #expect(!FileManager.default.fileExists(atPath: target))
    }

    @Test func temporaryIsPrivateWhileWrittenAndTheFileGetsTheUmaskMode() throws {
        let s = try Scene("modes")
        defer { s.remove() }
        let previous = umask(0o022)
        defer { umask(previous) }
        for (mask, expected) in [(mode_t(0o022), UInt32(0o644)), (0o027, 0o640), (0o022, 0o644)] {
            umask(mask)
            let target = s.dir + "/out-\(String(expected, radix: 8)).txt"
            var seen: (type: UInt32, mode: UInt32)?
            var seenText: String?
            var seenName = ""
            try AtomicFile.write(Array("payload\n".utf8), to: target, temporaryName: AtomicFile.randomTemporaryName(for:),
                                 afterWriting: { tmp in
                seen = Self.entry(tmp)
                seenText = Self.text(tmp)
                seenName = URL(fileURLWithPath: tmp).lastPathComponent
                // Nothing in the directory is readable by group or others while the temporary is open.
                for name in s.listing() where name.hasPrefix(".") {
                    #expect((Self.entry(s.dir + "/" + name)?.mode ?? 0o777) & 0o077 == 0, "\(name)")
                }
            })
            #expect(seen?.type == Self.regular)
            #expect(seen?.mode == 0o600)
            #expect(seenText == "payload\n")
            #expect(seenName.hasPrefix(".out-\(String(expected, radix: 8)).txt.tmp-") && AtomicFile.isTemporaryName(seenName), "\(seenName)")
            #expect(Self.entry(target)?.mode == expected, "umask \(String(mask, radix: 8))")
            #expect(Self.text(target) == "payload\n")
            #expect(!s.listing().contains(seenName))
        }
        #expect(s.listing() == ["out-644.txt", "out-640.txt"])
    }

    @Test func failureAfterTheTemporaryWasCreatedRemovesIt() throws {
        let s = try Scene("hook-fails")
        defer { s.remove() }
        struct Injected: Error {}
        try Data("old\n".utf8).write(to: URL(fileURLWithPath: s.dir + "/out.txt"))
        var tmp = ""
        #expect(throws: Injected.self) {
            try AtomicFile.write(Array("new\n".utf8), to: s.dir + "/out.txt", temporaryName: AtomicFile.randomTemporaryName(for:),
                                 afterWriting: { tmp = $0; throw Injected() })
        }
        #expect(!tmp.isEmpty && !FileManager.default.fileExists(atPath: tmp))
        #expect(Self.text(s.dir + "/out.txt") == "old\n")
        #expect(s.listing() == ["out.txt"])
    }

    @Test func leftoverTemporariesAreRemovedAndNothingElse() throws {
        let s = try Scene("leftovers")
        defer { s.remove() }
        let killed = [".checkpoint.json.tmp-0123456789abcdef", ".params_000019.safetensors.tmp-4242"]
        for name in killed + ["checkpoint.json", "notes.tmp-0123456789abcdef", ".hidden"] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: s.dir + "/" + name))
        }
        // A symlink with a temporary's name is not one of Kiln's files: neither it nor its target is removed.
        try FileManager.default.createSymbolicLink(atPath: s.dir + "/.solver0.tmp-fedcba9876543210", withDestinationPath: s.victim)
        try FileManager.default.createDirectory(atPath: s.dir + "/.dir.tmp-0123456789abcdef", withIntermediateDirectories: false)
        let removed = AtomicFile.removeLeftoverTemporaries(in: s.dir)
        #expect(removed == killed.sorted())
        #expect(s.listing() == ["checkpoint.json", "notes.tmp-0123456789abcdef", ".hidden",
                                ".solver0.tmp-fedcba9876543210", ".dir.tmp-0123456789abcdef"])
        #expect(s.victimText == Self.victimText)
        #expect(AtomicFile.removeLeftoverTemporaries(in: s.dir + "/absent").isEmpty)
    }
}
