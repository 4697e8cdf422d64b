// Plugin versions for the whole project (pinned when the demo was written; Android Studio's upgrade assistant
// can move them forward). The :core module is plain Kotlin/JVM and also compiles with a bare kotlinc.
plugins {
    id("com.android.application") version "8.13.1" apply false
    id("org.jetbrains.kotlin.android") version "2.2.21" apply false
    id("org.jetbrains.kotlin.jvm") version "2.2.21" apply false
}
