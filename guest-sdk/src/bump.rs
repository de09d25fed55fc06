//! A bump allocator for wasm32 guests. Every request runs in a fresh
//! instance that is thrown away afterwards, so freeing is pointless: memory
//! is handed out upwards from `__heap_base`, growing linear memory as needed
//! (the host caps it). The last allocation can grow or shrink in place, which
//! is what a `String` or `Vec` being built does.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

const PAGE: usize = 64 * 1024;

pub struct Bump {
    next: Cell<usize>,
    last: Cell<usize>,
}

// SAFETY: wasm32-unknown-unknown without the atomics feature has one thread.
unsafe impl Sync for Bump {}

#[global_allocator]
static ALLOCATOR: Bump = Bump { next: Cell::new(0), last: Cell::new(0) };

unsafe extern "C" {
    static __heap_base: u8;
}

impl Bump {
    /// Makes `[start, end)` usable, growing memory if needed.
    fn reserve(&self, end: usize) -> bool {
        let have = core::arch::wasm32::memory_size(0) * PAGE;
        if end <= have {
            return true;
        }
        let pages = (end - have).div_ceil(PAGE);
        core::arch::wasm32::memory_grow(0, pages) != usize::MAX
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut next = self.next.get();
        if next == 0 {
            next = &raw const __heap_base as usize;
        }
        let start = (next + layout.align() - 1) & !(layout.align() - 1);
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !self.reserve(end) {
            return core::ptr::null_mut();
        }
        self.next.set(end);
        self.last.set(start);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the most recent allocation can be given back.
        if ptr as usize == self.last.get() && ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        if start == self.last.get() && start + layout.size() == self.next.get() {
            let Some(end) = start.checked_add(new_size) else {
                return core::ptr::null_mut();
            };
            if !self.reserve(end) {
                return core::ptr::null_mut();
            }
            self.next.set(end);
            return ptr;
        }
        // SAFETY: same contract as GlobalAlloc::realloc's default.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}
