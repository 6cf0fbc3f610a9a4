import Kiln
import CGraphviz

/// Placeholder until the viewer lands: see issue "SimpleGraph viewer on libgvc".
public enum KilnGraphvizInfo {
    public static let version = "0"
}
